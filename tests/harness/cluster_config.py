"""What a local control plane is made of: paths, ports, token, flags, env file (pure logic)."""
from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import string
from dataclasses import dataclass
from pathlib import Path

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_CIDR_MASK = 24
CLUSTER_DOMAIN = "cluster.local"
CLUSTER_DNS = "10.96.0.10"
SA_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
BOOTSTRAP_GROUP = "system:bootstrappers:kubeadm:default-node-token"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
FRONT_PROXY_CLIENT = "front-proxy-client"
# TEST-NET-1 (RFC 5737): never routed, so nothing can ever be sent there by mistake.
ADVERTISE_NET = "192.0.2"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PORT_NAMES = ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler")
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
TOKEN_SECRET_RE = re.compile(r"^[a-z0-9]{16}$")


class ClusterError(Exception):
    """A control plane problem, with a message that says what to do."""


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PORT_NAMES}


@dataclass(frozen=True)
class BootstrapToken:
    token_id: str
    secret: str

    def __post_init__(self) -> None:
        if not TOKEN_ID_RE.match(self.token_id) or not TOKEN_SECRET_RE.match(self.secret):
            raise ValueError("a bootstrap token is [a-z0-9]{6}.[a-z0-9]{16}")

    @property
    def value(self) -> str:
        return f"{self.token_id}.{self.secret}"

    @classmethod
    def generate(cls) -> BootstrapToken:
        alphabet = string.ascii_lowercase + string.digits
        return cls("".join(secrets.choice(alphabet) for _ in range(6)),
                   "".join(secrets.choice(alphabet) for _ in range(16)))

    @classmethod
    def parse(cls, value: str) -> BootstrapToken:
        token_id, sep, secret = value.partition(".")
        if not sep:
            raise ValueError("a bootstrap token is [a-z0-9]{6}.[a-z0-9]{16}")
        return cls(token_id, secret)


@dataclass(frozen=True)
class Layout:
    """Every path under one cluster directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.conf"

    def kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.conf"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def cert(self, name: str) -> Path:
        return self.pki / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.pki / f"{name}.key"


def interface_for(root: Path) -> tuple[str, str]:
    """(interface name, advertise address) derived from the cluster directory.

    Distinct cluster directories (a developer's `.cluster`, each test session's temp dir)
    get distinct interfaces, so parallel clusters never remove each other's.
    """
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()
    host = int(digest[8:12], 16) % 254 + 1
    return f"kpy-{digest[:8]}", f"{ADVERTISE_NET}.{host}"


def etcd_args(layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        # A throwaway test cluster: skipping fsync keeps the 2-core CI box fast.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(layout: Layout, ports: Ports, *, advertise: str) -> list[str]:
    c, k = layout.cert, layout.key
    return [
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--advertise-address={advertise}",
        f"--tls-cert-file={c('apiserver')}",
        f"--tls-private-key-file={k('apiserver')}",
        f"--client-ca-file={c('ca')}",
        f"--kubelet-client-certificate={c('apiserver-kubelet-client')}",
        f"--kubelet-client-key={k('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={layout.pki / 'sa.pub'}",
        f"--service-account-signing-key-file={k('sa')}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--enable-bootstrap-token-auth=true",
        f"--requestheader-client-ca-file={c('front-proxy-ca')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={c('front-proxy-client')}",
        f"--proxy-client-key-file={k('front-proxy-client')}",
        "--profiling=false",
    ]


def _delegated(layout: Layout, component: str, port: int) -> list[str]:
    conf = layout.kubeconfig(component)
    return [
        f"--kubeconfig={conf}",
        f"--authentication-kubeconfig={conf}",
        f"--authorization-kubeconfig={conf}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={layout.cert(component)}",
        f"--tls-private-key-file={layout.key(component)}",
        f"--client-ca-file={layout.cert('ca')}",
        f"--requestheader-client-ca-file={layout.cert('front-proxy-ca')}",
        # One instance per cluster: no election, so no wait for a lease at start.
        "--leader-elect=false",
        "--profiling=false",
    ]


def controller_manager_args(layout: Layout, ports: Ports) -> list[str]:
    return [
        *_delegated(layout, "kube-controller-manager", ports.controller_manager),
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--allocate-node-cidrs=true",
        f"--cluster-cidr={CLUSTER_CIDR}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--node-cidr-mask-size={NODE_CIDR_MASK}",
        f"--cluster-signing-cert-file={layout.cert('ca')}",
        f"--cluster-signing-key-file={layout.key('ca')}",
        f"--root-ca-file={layout.cert('ca')}",
        f"--service-account-private-key-file={layout.key('sa')}",
        "--use-service-account-credentials=true",
        "--cluster-name=kubernetes",
    ]


def scheduler_args(layout: Layout, ports: Ports) -> list[str]:
    return _delegated(layout, "kube-scheduler", ports.scheduler)


def component_args(name: str, layout: Layout, ports: Ports, *, advertise: str) -> list[str]:
    if name == "etcd":
        return etcd_args(layout, ports)
    if name == "kube-apiserver":
        return apiserver_args(layout, ports, advertise=advertise)
    if name == "kube-controller-manager":
        return controller_manager_args(layout, ports)
    if name == "kube-scheduler":
        return scheduler_args(layout, ports)
    raise ValueError(f"unknown component {name!r}")


@dataclass(frozen=True)
class ClusterEnv:
    """What `.cluster/env` says: how clients and nodes reach this control plane."""

    kubeconfig: Path
    server: str
    token: str
    ca_cert_hash: str
    ca_cert: Path
    cluster_dir: Path
    advertise_address: str
    ports: Ports

    def join_command(self) -> str:
        return (f"kubelet-py join --server {self.server} --token {self.token} "
                f"--discovery-token-ca-cert-hash {self.ca_cert_hash}")

    def render(self) -> str:
        """Shell assignments, one per line, safe to `source` or `set -a; . env`."""
        pairs = {
            "KUBECONFIG": str(self.kubeconfig),
            "SERVER": self.server,
            "TOKEN": self.token,
            "CA_CERT_HASH": self.ca_cert_hash,
            "CA_CERT": str(self.ca_cert),
            "CLUSTER_DIR": str(self.cluster_dir),
            "ADVERTISE_ADDRESS": self.advertise_address,
        }
        pairs.update({f"{name.upper()}_PORT": str(port)
                      for name, port in self.ports.as_dict().items()})
        return "".join(f"{k}={shlex.quote(v)}\n" for k, v in pairs.items())

    @classmethod
    def parse(cls, text: str) -> ClusterEnv:
        values: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, raw = line.partition("=")
            words = shlex.split(raw) if sep else []
            if not sep or len(words) > 1:
                raise ValueError(f"not a shell assignment: {line!r}")
            values[key.strip()] = words[0] if words else ""
        try:
            ports = Ports(**{name: int(values[f"{name.upper()}_PORT"]) for name in PORT_NAMES})
            return cls(kubeconfig=Path(values["KUBECONFIG"]), server=values["SERVER"],
                       token=values["TOKEN"], ca_cert_hash=values["CA_CERT_HASH"],
                       ca_cert=Path(values["CA_CERT"]), cluster_dir=Path(values["CLUSTER_DIR"]),
                       advertise_address=values["ADVERTISE_ADDRESS"], ports=ports)
        except KeyError as exc:
            raise ValueError(f"env file lacks {exc.args[0]}") from None
