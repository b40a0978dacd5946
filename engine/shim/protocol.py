"""The monitor's control protocol: one JSON object per line on <sandbox dir>/monitor.sock.

Requests: {"op": "ping"}, {"op": "modules"} (the loaded module names, for tests),
{"op": "create", "container": MonitorContainer, "spec": InitSpec},
{"op": "start"|"delete"|"reopen_log", "id"}, {"op": "kill", "id", "signal"},
{"op": "shutdown"} (this pod only), {"op": "adopt", "dir", "pods_per_monitor"} (the process
serves one more sandbox dir: engine.shim.monitor), {"op": "attach", "id"} (the connection
then carries engine.shim.attach frames). Replies: {"ok": true, ...} or {"ok": false,
"kind": <EngineError subclass name>, "error": <message>}.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

SOCKET = "monitor.sock"
PIDFILE = "monitor.pid"
CONTAINERS = "containers"


@dataclasses.dataclass(frozen=True)
class MonitorContainer:
    id: str
    driver: str  # "native" | "runc"
    log_path: str
    runtime_binary: str = ""  # for the runc driver: runc or crun
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False  # close the container's stdin when the first attach ends


def container_dir(sandbox_dir: Path, cid: str) -> Path:
    return sandbox_dir / CONTAINERS / cid


def state_path(sandbox_dir: Path, cid: str) -> Path:
    return container_dir(sandbox_dir, cid) / "state.json"


def bundle_dir(sandbox_dir: Path, cid: str) -> Path:
    return container_dir(sandbox_dir, cid) / "bundle"
