"""Obtain the node's API credentials: token join, bootstrap kubeconfig, or a kubeconfig."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from kubelet_py.bootstrap.cahash import parse_pins
from kubelet_py.bootstrap.certstore import CLIENT_PREFIX, CertPair, CertStore, is_valid
from kubelet_py.bootstrap.csr import CLIENT_SIGNER, CLIENT_USAGES, CertRequest, request_certificate
from kubelet_py.bootstrap.discovery import discover
from kubelet_py.bootstrap.token import parse_token
from kubelet_py.client.kubeconfig import (
    Credentials,
    load_kubeconfig,
    render_kubeconfig,
    write_private,
)
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock
from kubelet_py.errors import BootstrapError, ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class JoinRequest:
    server: str
    token: str
    ca_cert_hashes: tuple[str, ...]
    skip_ca_verification: bool = False


@dataclasses.dataclass(frozen=True)
class Paths:
    kubeconfig: Path
    cert_dir: Path

    @property
    def client_store(self) -> CertStore:
        return CertStore(self.cert_dir, CLIENT_PREFIX)


def client_request(node_name: str) -> CertRequest:
    return CertRequest(signer=CLIENT_SIGNER, usages=CLIENT_USAGES, node_name=node_name)


def node_credentials(server: str, ca_pem: bytes, pair: CertPair) -> Credentials:
    return Credentials(server=server, ca_pem=ca_pem, cert_pem=pair.cert_pem,
                       key_pem=pair.key_pem)


async def _issue(bootstrap: Credentials, *, node_name: str, paths: Paths,
                 clock: Clock) -> Credentials:
    """Request a client certificate with bootstrap credentials; write pair and kubeconfig."""
    if bootstrap.ca_pem is None:
        raise BootstrapError("the bootstrap credentials carry no cluster CA")
    client = RestClient(bootstrap, user_agent="kubelet-py/bootstrap")
    try:
        issued = await request_certificate(client, client_request(node_name))
    finally:
        await client.close()
    pair = CertPair(cert_pem=issued.cert_pem, key_pem=issued.key_pem)
    store = paths.client_store
    store.write(pair, now=clock.now())
    current = store.current_path
    write_private(paths.kubeconfig, render_kubeconfig(
        server=bootstrap.server, ca_pem=bootstrap.ca_pem, user="default-auth",
        cert_file=current, key_file=current))
    log.info("wrote kubeconfig %s with client certificate %s", paths.kubeconfig, current)
    return node_credentials(bootstrap.server, bootstrap.ca_pem, pair)


async def join(request: JoinRequest, *, node_name: str, paths: Paths,
               clock: Clock) -> Credentials:
    token = parse_token(request.token)
    info = await discover(request.server, token, pins=parse_pins(list(request.ca_cert_hashes)),
                          skip_ca_verification=request.skip_ca_verification)
    bootstrap = Credentials(server=info.server, ca_pem=info.ca_pem, token=str(token))
    return await _issue(bootstrap, node_name=node_name, paths=paths, clock=clock)


def _current(paths: Paths, *, clock: Clock) -> Credentials | None:
    """The kubeconfig's credentials if present and its client certificate is valid."""
    if not paths.kubeconfig.exists():
        return None
    creds = load_kubeconfig(paths.kubeconfig)
    if creds.cert_pem is None or creds.key_pem is None:
        return creds  # token or other non-certificate credentials: nothing to check
    if is_valid(CertPair(cert_pem=creds.cert_pem, key_pem=creds.key_pem), now=clock.now()):
        return creds
    log.info("client certificate in %s is expired or not yet valid", paths.kubeconfig)
    return None


async def obtain(*, bootstrap_kubeconfig: Path | None, node_name: str, paths: Paths,
                 clock: Clock) -> Credentials:
    """As the upstream kubelet: use the kubeconfig, bootstrapping it when missing/expired."""
    creds = _current(paths, clock=clock)
    if creds is not None:
        return creds
    if bootstrap_kubeconfig is None:
        raise ConfigError(f"kubeconfig {paths.kubeconfig} is missing or its certificate "
                          "expired, and no --bootstrap-kubeconfig was given")
    return await _issue(load_kubeconfig(bootstrap_kubeconfig), node_name=node_name,
                        paths=paths, clock=clock)
