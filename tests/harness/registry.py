"""The local registry: `make registry` / `make registry-down`, and the `local_registry`
pytest fixture.

Two docker-registry instances on 127.0.0.1, free ports:
* ``plain``: HTTP, anonymous; every standard image (our variants and the mirrored stand-ins);
* ``tls``: HTTPS with a private CA and htpasswd basic auth; our own variants only.

State lives in REGISTRY_DIR (default ``<repo>/.registry``): ``state.json`` (pids, ports,
what was pushed), ``env`` (REGISTRY=, REGISTRY_TLS=, REGISTRY_CA=, REGISTRY_USER=,
REGISTRY_PASSWORD=), ``mirrors.yaml`` ({upstream host: {endpoint: [http://<REGISTRY>],
upstream: false}}), ``certs.d/<upstream>/hosts.toml`` (containerd's config_path), and one
directory per instance. `up` is idempotent:
live, healthy instances that still serve what was pushed are reused; anything stale (dead
pid, a pid that is no longer ours, missing tags, changed image code) is stopped and redone.

    python -m tests.harness.registry up | down | status | push-large [--size-mb N]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.harness import images, registry_server
from tests.harness.images_build import large_image
from tests.harness.registry_client import Credentials, RegistryClient, RegistryError
from tests.harness.registry_push import build_all, fingerprint, push_all, verify_pushed
from tests.harness.registry_push import write_outputs as _write_outputs
from tests.harness.registry_server import Instance
from tests.harness.registry_tls import TlsMaterial, make_tls
from tests.harness.shared import Shared

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


def default_dir() -> Path:
    return Path(os.environ.get("REGISTRY_DIR") or REPO / ".registry").resolve()


@dataclass(frozen=True)
class LocalRegistry:
    """What a test or a tool needs to use the two registries."""

    host: str
    tls_host: str
    ca_file: Path
    username: str
    password: str
    root: Path

    def ref(self, upstream: str) -> str:
        """The local name of an upstream reference (or of a `kubelet-py/...` name)."""
        parsed = images.parse_reference(upstream)
        return f"{self.host}/{parsed.local}"

    def client(self, *, tls: bool = False, auth: bool = True) -> RegistryClient:
        if not tls:
            return RegistryClient(self.host)
        creds = Credentials(self.username, self.password) if auth else None
        return RegistryClient(self.tls_host, tls=True, ca_file=self.ca_file, credentials=creds)

    def hosts_with_tls(self, directory: Path) -> Path:
        """An engined `--registry-hosts` file: the mirrors plus the TLS twin with its CA."""
        hosts = yaml.safe_load((self.root / "mirrors.yaml").read_text()) or {}
        hosts[self.tls_host] = {"ca": str(self.ca_file)}
        path = directory / "hosts.yaml"
        path.write_text(yaml.safe_dump(hosts))
        return path

    def env(self) -> dict[str, str]:
        return {"REGISTRY": self.host, "REGISTRY_TLS": self.tls_host,
                "REGISTRY_CA": str(self.ca_file), "REGISTRY_USER": self.username,
                "REGISTRY_PASSWORD": self.password}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_state(directory: Path) -> dict[str, object]:
    try:
        data = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(directory: Path, state: dict[str, object]) -> None:
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / "state.json")


def _instances(state: dict[str, object]) -> dict[str, Instance]:
    raw = state.get("instances")
    if not isinstance(raw, dict):
        return {}
    return {name: Instance.from_json(data) for name, data in raw.items()
            if isinstance(data, dict)}


def _stop_all(directory: Path, state: dict[str, object]) -> list[str]:
    notes = []
    for instance in _instances(state).values():
        if registry_server.stop(instance):
            notes.append(f"stopped {instance.name} registry (pid {instance.pid})")
        else:
            notes.append(f"{instance.name} registry (pid {instance.pid}) was not running")
    (directory / "state.json").unlink(missing_ok=True)
    return notes


def _reusable(state: dict[str, object], tls: TlsMaterial, fp: str) -> bool:
    found = _instances(state)
    if set(found) != {"plain", "tls"}:
        return False
    if state.get("fingerprint") != fp:
        log.info("the image set changed since the last push")
        return False
    for instance in found.values():
        if not registry_server.is_ours(instance):
            log.info("%s registry (pid %d) is gone", instance.name, instance.pid)
            return False
        # A live registry on a loaded machine may be slow: do not mistake that for stale.
        if not registry_server.responds(instance, tls, timeout=15.0):
            log.info("%s registry on %s does not answer", instance.name, instance.host)
            return False
    pushed = state.get("pushed")
    if not isinstance(pushed, dict):
        return False
    plain, secure = _clients(found, tls)
    try:
        with plain, secure:
            return (verify_pushed(plain, dict(pushed.get("plain", {})))
                    and verify_pushed(secure, dict(pushed.get("tls", {}))))
    except (RegistryError, OSError) as exc:
        log.info("registry state not reusable: %s", exc)
        return False


def _clients(found: dict[str, Instance], tls: TlsMaterial) -> tuple[RegistryClient, ...]:
    return (RegistryClient(found["plain"].host),
            RegistryClient(found["tls"].host, tls=True, ca_file=tls.ca_cert,
                           credentials=Credentials(tls.username, tls.password)))


def _start_and_push(directory: Path, tls: TlsMaterial, fp: str) -> dict[str, Instance]:
    """Start both instances and push; on any failure stop whatever was started."""
    found: dict[str, Instance] = {}
    try:
        for name, material in (("plain", None), ("tls", tls)):
            found[name] = registry_server.start(directory / name, name=name, tls=material)
            # Record each pid at once, so that nothing started is ever unaccounted for.
            _save_state(directory, {"instances": {k: v.to_json() for k, v in found.items()}})
        built = build_all(images.local_images())
        local_only = [item for item in built if item[0].startswith(images.LOCAL_PREFIX)]
        plain, secure = _clients(found, tls)
        with plain, secure, ThreadPoolExecutor(max_workers=2) as pool:
            jobs = {"plain": pool.submit(push_all, plain, built),
                    "tls": pool.submit(push_all, secure, local_only)}
            pushed = {name: job.result() for name, job in jobs.items()}
    except BaseException:
        _stop_all(directory, _load_state(directory))
        raise
    _save_state(directory, {"instances": {k: v.to_json() for k, v in found.items()},
                            "fingerprint": fp, "pushed": pushed})
    return found


def up(directory: Path | None = None) -> LocalRegistry:
    """Start (or reuse) both registries and push the standard image set."""
    directory = directory or default_dir()
    with _locked(directory):
        tls = make_tls(directory / "tls" / "pki")
        fp = fingerprint()
        state = _load_state(directory)
        if state and _reusable(state, tls, fp):
            log.info("registries already up and current; nothing to do")
            found = _instances(state)
        else:
            for note in _stop_all(directory, state):
                log.info("stale state: %s", note)
            found = _start_and_push(directory, tls, fp)
        result = LocalRegistry(host=found["plain"].host, tls_host=found["tls"].host,
                               ca_file=tls.ca_cert, username=tls.username,
                               password=tls.password, root=directory)
        _write_outputs(directory, env=result.env(), host=result.host)
        return result


def down(directory: Path | None = None) -> list[str]:
    directory = directory or default_dir()
    if not directory.exists():
        return ["no registry state"]
    with _locked(directory):
        notes = _stop_all(directory, _load_state(directory))
        for name in ("env", "mirrors.yaml"):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(directory / "certs.d", ignore_errors=True)
        return notes or ["no registry state"]


def status(directory: Path | None = None) -> dict[str, bool]:
    directory = directory or default_dir()
    return {f"{i.name} {i.host} pid {i.pid}": registry_server.is_ours(i)
            for i in _instances(_load_state(directory)).values()}


def push_large(size_mb: int, directory: Path | None = None) -> str:
    """Build the benchmark image on demand and push it as kubelet-py/large:<size>mb."""
    directory = directory or default_dir()
    found = _instances(_load_state(directory))
    if "plain" not in found or not registry_server.is_ours(found["plain"]):
        raise SystemExit("registry is not running: run `make registry` first")
    image = large_image(size_mb)
    with RegistryClient(found["plain"].host) as client:
        tag = f"{size_mb}mb"
        push_all(client, [(f"{images.LOCAL_PREFIX}/large", tag, image)])
    return f"{found['plain'].host}/{images.LOCAL_PREFIX}/large:{tag}"


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A private pair of registries (not the `make registry` one), torn down at the end."""
    from tests.harness.prereq import need_binary

    need_binary("docker-registry", "apt-get install docker-registry")
    # Test modules import this fixture, and each import is a definition of its own: they
    # all share one pair of registries (nothing a test pushes there disturbs another).
    with _SESSION_REGISTRY.use(lambda: _private_registry(tmp_path_factory)) as registry:
        yield registry


_SESSION_REGISTRY: Shared[LocalRegistry] = Shared()


@contextlib.contextmanager
def _private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    directory = tmp_path_factory.mktemp("registry")
    try:
        yield up(directory)
    finally:
        down(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.registry")
    parser.add_argument("command", choices=["up", "down", "status", "push-large"])
    parser.add_argument("--dir", type=Path, default=None, help="state dir (REGISTRY_DIR)")
    parser.add_argument("--size-mb", type=int, default=128, help="push-large: MiB of files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="registry: %(message)s", stream=sys.stderr)
    started = time.monotonic()
    try:
        if args.command == "up":
            reg = up(args.dir)
            print(f"REGISTRY_TLS={reg.tls_host}\nREGISTRY_CA={reg.ca_file}")
            print(f"REGISTRY_ENV={reg.root / 'env'}\nMIRRORS={reg.root / 'mirrors.yaml'}")
            print(f"CONTAINERD_CERTS_D={reg.root / 'certs.d'}")
            log.info("ready in %.1fs", time.monotonic() - started)
            print(f"REGISTRY={reg.host}")
        elif args.command == "down":
            for note in down(args.dir):
                print(note)
        elif args.command == "status":
            current = status(args.dir)
            for name, alive in current.items():
                print(f"{name}: {'running' if alive else 'not running'}")
            return 0 if current and all(current.values()) else 1
        else:
            print(f"LARGE_IMAGE={push_large(args.size_mb, args.dir)}")
    except (registry_server.RegistryStartError, OSError, RuntimeError) as exc:
        print(f"registry {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
