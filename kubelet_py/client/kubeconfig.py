"""Kubeconfig files: read the current context's credentials, write the kubelet's own."""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kubelet_py.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_pem: bytes | None = None
    insecure_skip_tls_verify: bool = False
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem is not None:
            ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        else:
            ctx = ssl.create_default_context()
        if self.cert_pem is not None and self.key_pem is not None:
            with _private_files(self.cert_pem, self.key_pem) as (cert, key):
                ctx.load_cert_chain(cert, key)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@contextlib.contextmanager
def _private_files(*blobs: bytes) -> Iterator[list[str]]:
    """Materialise PEM blobs for `load_cert_chain` in a 0700 directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="kubelet-py-tls-") as tmp:
        paths = []
        for i, blob in enumerate(blobs):
            path = Path(tmp) / f"{i}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            paths.append(str(path))
        yield paths


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    name = entry.get(key)
    if name:
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"kubeconfig {key} {path}: {exc.strerror}") from exc
    return None


def _named(items: list[dict[str, Any]] | None, name: str, kind: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            value = item.get(kind)
            return value if isinstance(value, dict) else {}
    raise ConfigError(f"kubeconfig {path}: no {kind} named {name!r}")


def parse_kubeconfig(doc: dict[str, Any], *, base: Path, origin: Path) -> Credentials:
    context_name = doc.get("current-context")
    contexts = doc.get("contexts") or []
    if not context_name:
        if len(contexts) != 1:
            raise ConfigError(f"kubeconfig {origin}: no current-context")
        context_name = contexts[0].get("name", "")
    context = _named(contexts, context_name, "context", origin)
    cluster = _named(doc.get("clusters"), context.get("cluster", ""), "cluster", origin)
    users = doc.get("users") or []
    user = _named(users, context["user"], "user", origin) if context.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"kubeconfig {origin}: cluster has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    return Credentials(
        server=str(server).rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        cert_pem=_data_or_file(user, "client-certificate", base),
        key_pem=_data_or_file(user, "client-key", base),
        token=token or None,
    )


def load_kubeconfig(path: Path) -> Credentials:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path} is not YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return parse_kubeconfig(doc, base=path.parent, origin=path)


def render_kubeconfig(*, server: str, ca_pem: bytes, user: str,
                      cert_file: Path | None = None, key_file: Path | None = None,
                      token: str | None = None, cluster: str = "default-cluster") -> str:
    """A kubeconfig with one cluster, one user and one context (the kubelet's layout)."""
    auth: dict[str, str] = {}
    if cert_file is not None and key_file is not None:
        auth = {"client-certificate": str(cert_file), "client-key": str(key_file)}
    if token is not None:
        auth["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": "default-context",
                      "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": "default-context",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file atomically with mode 0600 (rename over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
