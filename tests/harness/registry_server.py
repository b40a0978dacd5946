"""Running Debian's `docker-registry` (distribution v2) on 127.0.0.1 with a free port.

Each instance lives in its own directory: ``config.yml``, ``storage/`` and ``registry.log``.
The process is started in its own session so that it outlives `make registry`; it is only
ever stopped by pid after checking that the pid's command line names our config file.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.harness.registry_client import RegistryClient
from tests.harness.registry_tls import TlsMaterial

DEBIAN_BINARY = "/usr/bin/docker-registry"


class RegistryStartError(RuntimeError):
    """docker-registry is missing or did not come up."""


@dataclass(frozen=True)
class Instance:
    """A started registry: what is needed to find, use and stop it again."""

    name: str
    pid: int
    port: int
    config: str
    tls: bool

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Instance:
        return cls(name=str(data["name"]), pid=int(str(data["pid"])),
                   port=int(str(data["port"])), config=str(data["config"]),
                   tls=bool(data["tls"]))


def registry_binary() -> str:
    found = shutil.which("docker-registry") or (
        DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None)
    if not found:
        raise RegistryStartError("docker-registry not found: apt-get install docker-registry")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int, tls: TlsMaterial | None) -> Path:
    """The registry's YAML config (JSON is valid YAML): loopback only, filesystem storage,
    deletes allowed, and for the TLS instance a certificate and an htpasswd realm."""
    storage = directory / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16),
                               "headers": {"X-Content-Type-Options": ["nosniff"]}}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
        "http": http,
    }
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
        config["auth"] = {"htpasswd": {"realm": "kubelet-py-test-registry",
                                       "path": str(tls.htpasswd)}}
    path = directory / "config.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _clean_env() -> dict[str, str]:
    # REGISTRY_* variables override the config file; never inherit them.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def start(directory: Path, *, name: str, tls: TlsMaterial | None = None,
          attempts: int = 5, timeout: float = 60.0) -> Instance:
    """Start one registry in `directory` and wait until `GET /v2/` answers."""
    binary = registry_binary()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "registry.log"
    last_error = ""
    for _ in range(attempts):
        port = free_port()
        config = write_config(directory, port, tls)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=_clean_env(), cwd=directory)
        instance = Instance(name=name, pid=proc.pid, port=port, config=str(config),
                            tls=tls is not None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = _tail(log_path)
                break
            if responds(instance, tls):
                return instance
            time.sleep(0.05)
        else:
            stop(instance)
            raise RegistryStartError(f"docker-registry {name} did not answer on {port} within "
                                     f"{timeout:.0f}s; log {log_path}:\n{_tail(log_path)}")
        if "address already in use" not in last_error:
            break
    raise RegistryStartError(f"docker-registry {name} exited; log {log_path}:\n{last_error}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def responds(instance: Instance, tls: TlsMaterial | None, *, timeout: float = 2.0) -> bool:
    """True when the registry answers the API version check (200, or 401 when auth is on)."""
    client = RegistryClient(instance.host, tls=instance.tls,
                            ca_file=tls.ca_cert if tls else None, timeout=timeout)
    try:
        return client.ping(auth=False).status in (200, 401)
    except (OSError, ConnectionError):
        return False
    finally:
        client.close()


def is_ours(instance: Instance) -> bool:
    """The pid is alive, not a zombie, and its command line serves our config file."""
    try:
        cmdline = Path(f"/proc/{instance.pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{instance.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and instance.config.encode() in cmdline


def stop(instance: Instance, *, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; returns False if the pid was not ours."""
    if not is_ours(instance):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(instance.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(instance.pid)
            if not is_ours(instance):
                return True
            time.sleep(0.05)
    return not is_ours(instance)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
