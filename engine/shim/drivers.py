"""The monitor's choice of exec driver for a container."""
from __future__ import annotations

from pathlib import Path

from engine.errors import InvalidArgument
from engine.execdriver.base import ExecDriver
from engine.execdriver.native import NativeDriver
from engine.execdriver.runc import RuncDriver  # imported here, once, by the monitor zygote
from engine.shim.protocol import MonitorContainer

_native = NativeDriver()


def driver_for(meta: MonitorContainer, sandbox_dir: Path) -> ExecDriver:
    if meta.driver == "native":
        return _native
    if meta.driver == "runc":
        return RuncDriver(binary=meta.runtime_binary or "runc", state_root=sandbox_dir / "runc")
    raise InvalidArgument(f"unknown exec driver {meta.driver!r}")
