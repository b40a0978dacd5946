"""The engine daemon's configuration: paths, drivers, registry mirrors, CNI locations."""
from __future__ import annotations

import dataclasses
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/kubelet-py/engine")
DEFAULT_RUN_ROOT = Path("/run/kubelet-py/engine")
DEFAULT_LISTEN = "unix:///run/kubelet-py/engine.sock"


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    root: Path = DEFAULT_ROOT
    run_root: Path = DEFAULT_RUN_ROOT
    listen: str = DEFAULT_LISTEN
    config_file: Path | None = None
