"""Command-line flags of kubelet-py, named as the upstream kubelet names them."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from kubelet_py.pods.userns_range import IDS_PER_POD

DEFAULT_ROOT_DIR = "/var/lib/kubelet-py"
DEFAULT_RUNTIME_ENDPOINT = "unix:///run/kubelet-py/engine.sock"


@dataclasses.dataclass(frozen=True)
class KubeletOptions:
    kubeconfig: Path | None
    bootstrap_kubeconfig: Path | None
    config: Path | None
    container_runtime_endpoint: str
    image_service_endpoint: str | None
    pod_manifest_path: Path | None
    node_ip: str | None
    hostname_override: str | None
    max_pods: int
    root_dir: Path
    cert_dir: Path | None
    rotate_certificates: bool
    rotate_server_certificates: bool
    node_labels: dict[str, str]
    register_node: bool
    pod_cidr: str | None
    cluster_dns: tuple[str, ...]
    cluster_domain: str
    address: str
    port: int
    healthz_port: int
    runtime_request_timeout: float
    pod_logs_dir: Path
    verbosity: int
    ids_per_pod: int = IDS_PER_POD
    """KubeletConfiguration `userNamespaces.idsPerPod` (no flag upstream either)."""


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--node-labels: {item!r} is not key=value")
        out[key] = value
    return out


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 2m or 30s")


def add_kubelet_flags(parser: argparse.ArgumentParser, *, keep_parent: bool = False) -> None:
    """The kubelet's flags; with `keep_parent` (a subcommand), a flag not repeated after the
    subcommand keeps the value given before it instead of falling back to the default."""

    def add(*names: str, **kwargs: Any) -> None:
        if keep_parent:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*names, **kwargs)

    add("--kubeconfig", type=Path, help="kubeconfig with the node's credentials")
    add("--bootstrap-kubeconfig", type=Path,
        help="kubeconfig with a bootstrap token, used to request a client certificate")
    add("--config", type=Path, help="a KubeletConfiguration YAML file")
    add("--container-runtime-endpoint", default=DEFAULT_RUNTIME_ENDPOINT,
        help=f"CRI endpoint (default {DEFAULT_RUNTIME_ENDPOINT})")
    add("--image-service-endpoint", help="CRI image endpoint (default: the runtime endpoint)")
    add("--pod-manifest-path", type=Path, help="directory of static pod manifests")
    add("--node-ip", help="the node's InternalIP")
    add("--hostname-override", help="node name instead of the hostname")
    add("--max-pods", type=int, default=110, help="pods this node runs at most (default 110)")
    add("--root-dir", type=Path, default=Path(DEFAULT_ROOT_DIR),
        help=f"kubelet state directory (default {DEFAULT_ROOT_DIR})")
    add("--cert-dir", type=Path, help="where client and serving certificates live "
        "(default <root-dir>/pki)")
    add("--rotate-certificates", action="store_true", default=True,
        help="rotate the client certificate before it expires (default on)")
    add("--rotate-server-certificates", action="store_true",
        help="request the serving certificate with a kubernetes.io/kubelet-serving CSR")
    add("--node-labels", type=_labels, default={}, help="k=v,... labels to register with")
    add("--register-node", action=argparse.BooleanOptionalAction, default=True,
        help="register the node with the API server (default on)")
    add("--pod-cidr", help="pod CIDR for standalone mode (else node.spec.podCIDR)")
    add("--cluster-dns", default="", help="comma-separated DNS server IPs for pods")
    add("--cluster-domain", default="cluster.local", help="cluster DNS domain")
    add("--address", default="0.0.0.0",
        help="IP address the kubelet API listens on (default 0.0.0.0)")
    add("--port", type=int, default=10250, help="HTTPS port of the kubelet API (default 10250)")
    add("--healthz-port", type=int, default=10248, help="plain healthz port, 0 disables")
    add("--runtime-request-timeout", type=parse_duration, default=120.0,
        help="timeout of CRI requests except long-running ones (default 2m)")
    add("--pod-logs-dir", type=Path, default=Path("/var/log/pods"),
        help="where container logs go (podLogsDir; default /var/log/pods)")
    add("-v", "--v", dest="verbosity", type=int, default=0, help="log verbosity")
    if not keep_parent:
        parser.set_defaults(ids_per_pod=None)  # only from the --config file


def _flag_default(attr: str) -> object:
    parser = argparse.ArgumentParser(add_help=False)
    add_kubelet_flags(parser)
    return parser.get_default(attr)


def options_from_args(ns: argparse.Namespace) -> KubeletOptions:
    if ns.config is not None:
        from kubelet_py.config_file import apply_config_file

        apply_config_file(ns, ns.config, _flag_default)
    return KubeletOptions(
        kubeconfig=ns.kubeconfig,
        bootstrap_kubeconfig=ns.bootstrap_kubeconfig,
        config=ns.config,
        container_runtime_endpoint=ns.container_runtime_endpoint,
        image_service_endpoint=ns.image_service_endpoint,
        pod_manifest_path=ns.pod_manifest_path,
        node_ip=ns.node_ip,
        hostname_override=ns.hostname_override,
        max_pods=ns.max_pods,
        root_dir=ns.root_dir,
        cert_dir=ns.cert_dir,
        rotate_certificates=ns.rotate_certificates,
        rotate_server_certificates=ns.rotate_server_certificates,
        node_labels=dict(ns.node_labels),
        register_node=ns.register_node,
        pod_cidr=ns.pod_cidr,
        cluster_dns=tuple(filter(None, ns.cluster_dns.split(","))),
        cluster_domain=ns.cluster_domain,
        address=ns.address,
        port=ns.port,
        healthz_port=ns.healthz_port,
        runtime_request_timeout=ns.runtime_request_timeout,
        pod_logs_dir=ns.pod_logs_dir,
        verbosity=ns.verbosity,
        ids_per_pod=IDS_PER_POD if ns.ids_per_pod is None else ns.ids_per_pod,
    )
