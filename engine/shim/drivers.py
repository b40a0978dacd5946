"""The monitor's choice of exec driver for a container."""
from __future__ import annotations

from pathlib import Path

from engine.errors import InvalidArgument
from engine.execdriver.base import ExecDriver
from engine.execdriver.native import NativeDriver
from engine.shim.protocol import MonitorContainer

_native = NativeDriver()


def driver_for(meta: MonitorContainer, sandbox_dir: Path) -> ExecDriver:
    if meta.driver == "native":
        return _native
    if meta.driver == "runc":
        from engine.execdriver.runc import RuncDriver  # only pods that use it pay for it

        return RuncDriver(binary=meta.runtime_binary or "runc", state_root=sandbox_dir / "runc")
    raise InvalidArgument(f"unknown exec driver {meta.driver!r}")
