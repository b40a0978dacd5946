"""Per-attachment cache of the config used and the result of ADD (for CHECK, DEL, GC)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.networkdriver.plugins import spec


@dataclasses.dataclass(frozen=True)
class CachedAttachment:
    network: str
    container_id: str
    ifname: str
    netns: str
    cni_args: str
    config: Mapping[str, Any]  # the NetworkConfigList.to_json() that ADD ran
    result: Mapping[str, Any]
    capability_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class ResultCache:
    def __init__(self, root: Path) -> None:
        self.dir = root / "results"

    def _path(self, network: str, container_id: str, ifname: str) -> Path:
        spec.validate_container_id(container_id)
        spec.validate_ifname(ifname)
        return self.dir / f"{network}-{container_id}-{ifname}.json"

    def save(self, entry: CachedAttachment) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(entry.network, entry.container_id, entry.ifname)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(entry)))
        os.replace(tmp, path)

    def load(self, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
        try:
            raw = json.loads(self._path(network, container_id, ifname).read_text())
            return CachedAttachment(**raw)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # a torn or foreign file: treat as absent, DEL still runs

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(network, container_id, ifname).unlink()

    def entries(self) -> Iterator[CachedAttachment]:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            try:
                yield CachedAttachment(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
