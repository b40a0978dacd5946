"""Token discovery: fetch `kube-public/cluster-info`, check its JWS, pin the CA (as kubeadm)."""
from __future__ import annotations

import base64
import dataclasses
import logging

import yaml

from kubelet_py.bootstrap.cahash import check_pins
from kubelet_py.bootstrap.token import BootstrapToken, verify_detached
from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.client.kubeconfig import Credentials
from kubelet_py.client.rest import RestClient
from kubelet_py.errors import BootstrapError

log = logging.getLogger(__name__)

CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    server: str
    """The server the user gave; cluster-info's own may be unreachable from this host."""
    ca_pem: bytes


def ca_from_cluster_info(configmap: dict[str, object], token: BootstrapToken) -> bytes:
    """Verify the signature over `data.kubeconfig` and return the CA it names."""
    data = configmap.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("kubeconfig"), str):
        raise BootstrapError("cluster-info ConfigMap has no data.kubeconfig")
    signature = data.get(token.configmap_key)
    if not isinstance(signature, str):
        raise BootstrapError(f"cluster-info is not signed for token {token.id} (no "
                             f"{token.configmap_key}): the token is unknown or expired")
    kubeconfig: str = data["kubeconfig"]
    verify_detached(signature, kubeconfig.encode(), token)
    try:
        doc = yaml.safe_load(kubeconfig)
        cluster = doc["clusters"][0]["cluster"]
        return base64.b64decode(cluster["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BootstrapError(f"cluster-info kubeconfig has no CA data: {exc!r}") from exc


async def discover(server: str, token: BootstrapToken, *, pins: frozenset[str],
                   skip_ca_verification: bool = False) -> ClusterInfo:
    """Return the verified cluster CA for `server`, or raise BootstrapError."""
    if not pins and not skip_ca_verification:
        raise BootstrapError("give --discovery-token-ca-cert-hash sha256:<hash> (or, unsafely, "
                             "--discovery-token-unsafe-skip-ca-verification)")
    unverified = RestClient(Credentials(server=server, insecure_skip_tls_verify=True),
                            user_agent="kubelet-py/bootstrap")
    try:
        configmap = await unverified.get(CLUSTER_INFO)
    except ApiError as exc:
        raise BootstrapError(f"cannot read cluster-info anonymously from {server}: {exc}") \
            from exc
    except ApiUnavailable as exc:
        raise BootstrapError(f"cannot reach the API server {server}: {exc}") from exc
    finally:
        await unverified.close()
    ca_pem = ca_from_cluster_info(configmap, token)
    if not skip_ca_verification:
        check_pins(ca_pem, pins)
    # Re-read over TLS verified against the pinned CA: the server must hold its key.
    secure = RestClient(Credentials(server=server, ca_pem=ca_pem),
                        user_agent="kubelet-py/bootstrap")
    try:
        again = await secure.get(CLUSTER_INFO)
    except (ApiError, ApiUnavailable) as exc:
        raise BootstrapError(f"the API server's TLS certificate is not signed by the "
                             f"pinned cluster CA: {exc}") from exc
    finally:
        await secure.close()
    if ca_from_cluster_info(again, token) != ca_pem:
        raise BootstrapError("cluster-info changed between the unverified and verified reads")
    log.info("cluster CA verified for %s", server)
    return ClusterInfo(server=server, ca_pem=ca_pem)
