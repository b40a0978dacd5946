"""The typed ClientSet (the kubernetes package's API classes) and the dynamic client.

Both are synchronous; the kubelet calls them through `asyncio.to_thread` off its hot paths
(CSR requests, CRDs). Hot paths use `RestClient` (raw JSON on the event loop).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import dynamic

from kubelet_py.client.kubeconfig import Credentials


@dataclasses.dataclass(frozen=True)
class ClientSet:
    api: Any
    """The `kubernetes.client.ApiClient` the typed API classes share."""
    pem_dir: Path
    """Private copies of the CA and client pair the kubernetes package reads from files."""

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def coordination(self) -> Any:
        return k8s.CoordinationV1Api(self.api)

    @property
    def certificates(self) -> Any:
        return k8s.CertificatesV1Api(self.api)

    def dynamic(self) -> Any:
        """A `kubernetes.dynamic.DynamicClient` (discovery runs on first use)."""
        return dynamic.DynamicClient(self.api)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.api.close()
        shutil.rmtree(self.pem_dir, ignore_errors=True)


def new_clientset(credentials: Credentials, *, state_dir: Path | None = None) -> ClientSet:
    """Build a ClientSet from credentials; PEM data is written to private files it needs."""
    conf = k8s.Configuration()
    conf.host = credentials.server
    conf.verify_ssl = not credentials.insecure_skip_tls_verify
    directory = Path(tempfile.mkdtemp(prefix="kubelet-py-cs-", dir=state_dir))
    if credentials.ca_pem is not None:
        conf.ssl_ca_cert = _private(directory / "ca.crt", credentials.ca_pem)
    if credentials.cert_pem is not None and credentials.key_pem is not None:
        conf.cert_file = _private(directory / "client.crt", credentials.cert_pem)
        conf.key_file = _private(directory / "client.key", credentials.key_pem)
    if credentials.token:
        conf.api_key = {"authorization": f"Bearer {credentials.token}"}
    return ClientSet(api=k8s.ApiClient(conf), pem_dir=directory)


def _private(path: Path, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return str(path)
