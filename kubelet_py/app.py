"""Wiring of the kubelet's parts; the entry point behind `kubelet-py`."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubelet_py.bootstrap.certstore import SERVER_PREFIX, CertPair, CertStore
from kubelet_py.bootstrap.credentials import (
    JoinRequest,
    Paths,
    client_request,
    join,
    node_credentials,
    obtain,
)
from kubelet_py.bootstrap.rotation import Rotator
from kubelet_py.bootstrap.serving import ensure_self_signed, serving_rotator
from kubelet_py.client.informer import Informer, Store
from kubelet_py.client.kubeconfig import Credentials, load_kubeconfig
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock, RealClock
from kubelet_py.cri_client import CRIClient, open_cri
from kubelet_py.errors import KubeletError
from kubelet_py.node.agent import NodeAgent, NodeConfig
from kubelet_py.node.allocatable import Allocatable, node_allocatable
from kubelet_py.node.machine import MachineInfo, collect_machine, default_node_ip
from kubelet_py.node.setters import node_labels
from kubelet_py.options import KubeletOptions
from kubelet_py.pods.cri_config import NodeContext
from kubelet_py.pods.executor import Executor
from kubelet_py.pods.manager import PodManager
from kubelet_py.pods.pull_auth import SecretPullAuth
from kubelet_py.pods.runtime_view import pod_runtime
from kubelet_py.pods.service_env import ServiceLinks
from kubelet_py.pods.userns import UserNamespaces
from kubelet_py.pods.userns_range import kubelet_range
from kubelet_py.pods.volumes import Volumes
from kubelet_py.server.auth import WebhookAuth
from kubelet_py.server.healthz import HealthzServer
from kubelet_py.server.host_stats import HostStats
from kubelet_py.server.http import KubeletServer
from kubelet_py.server.metrics import KubeletMetrics
from kubelet_py.server.stats import SummaryProvider

log = logging.getLogger("kubelet_py")


@dataclasses.dataclass(frozen=True)
class Identity:
    node_name: str
    node_ip: str | None
    paths: Paths


def identity(options: KubeletOptions) -> Identity:
    name = (options.hostname_override or socket.gethostname()).lower()
    cert_dir = options.cert_dir or options.root_dir / "pki"
    kubeconfig = options.kubeconfig or options.root_dir / "kubeconfig"
    return Identity(node_name=name, node_ip=options.node_ip or default_node_ip(),
                    paths=Paths(kubeconfig=kubeconfig, cert_dir=cert_dir))


async def credentials(options: KubeletOptions, ns: argparse.Namespace, ident: Identity,
                      clock: Clock) -> Credentials | None:
    """Join, bootstrap, or read the kubeconfig; None means standalone (no API server)."""
    if getattr(ns, "command", None) == "join":
        request = JoinRequest(server=ns.server, token=ns.token,
                              ca_cert_hashes=tuple(ns.discovery_token_ca_cert_hash),
                              skip_ca_verification=ns.discovery_token_unsafe_skip_ca_verification)
        return await join(request, node_name=ident.node_name, paths=ident.paths, clock=clock)
    if options.bootstrap_kubeconfig is not None:
        return await obtain(bootstrap_kubeconfig=options.bootstrap_kubeconfig,
                            node_name=ident.node_name, paths=ident.paths, clock=clock)
    if options.kubeconfig is not None:
        return load_kubeconfig(options.kubeconfig)
    return None


def pod_manager(options: KubeletOptions, ident: Identity, *, rest: RestClient | None,
                cri: CRIClient, clock: Clock, volumes: Volumes, allocatable: Allocatable,
                services: ServiceLinks, node: NodeView) -> PodManager:
    host_ips = (ident.node_ip,) if ident.node_ip else ()
    ctx = NodeContext(node_name=ident.node_name, host_ips=host_ips,
                      cluster_dns=options.cluster_dns, cluster_domain=options.cluster_domain,
                      log_root=options.pod_logs_dir, allocatable=allocatable)
    userns = UserNamespaces(id_range=kubelet_range(ids_per_pod=options.ids_per_pod),
                            pods_dir=options.root_dir / "pods", max_pods=options.max_pods,
                            status=cri.info.status, ids_per_pod=options.ids_per_pod)
    executor = Executor(cri, ctx=ctx, volumes=volumes, auth=SecretPullAuth(rest),
                        objects=rest, services=services, userns=userns)

    def cleanup(uid: str) -> None:
        """The pod's sandboxes are removed: free its user namespace block, its volumes."""
        userns.release(uid)
        volumes.cleanup(uid)

    return PodManager(rest, cri, node_name=ident.node_name, executor=executor, clock=clock,
                      host_ips=host_ips, cleanup=cleanup, userns=userns,
                      manifest_path=options.pod_manifest_path, allocatable=allocatable,
                      node=node)


class NodeView:
    """The Node as admission sees it: the registered Node's labels and taints (kubectl
    label/taint may have changed them), else the labels this kubelet registers it with and
    no taints."""

    def __init__(self, defaults: dict[str, str], *, name: str = "",
                 store: Store | None = None) -> None:
        self.defaults = defaults
        self.name = name
        self.store = store
        """The watched Node (a one-object informer): fresh within the watch's latency."""
        self.agent: NodeAgent | None = None
        """Its status loop: the Node as last read (every 10 s), until the watch has it."""

    def _node(self) -> dict[str, Any]:
        node = self.store.get(self.name) if self.store is not None else None
        if node is None and self.agent is not None:
            node = self.agent.status.node
        return node if isinstance(node, dict) else {}

    def labels(self) -> Mapping[str, str]:
        labels = (self._node().get("metadata") or {}).get("labels")
        return dict(labels) if isinstance(labels, dict) else self.defaults

    def taints(self) -> tuple[Mapping[str, Any], ...]:
        taints = (self._node().get("spec") or {}).get("taints")
        if not isinstance(taints, list):
            return ()
        return tuple(t for t in taints if isinstance(t, dict))


def client_rotator(rest: RestClient, ident: Identity, clock: Clock) -> Rotator | None:
    """Rotate the client certificate when it lives in the cert dir's `-current` pair."""
    store = ident.paths.client_store
    pair = store.load()
    creds = rest.credentials
    if pair is None or creds.cert_pem is None or pair.cert_pem.strip() != creds.cert_pem.strip():
        return None
    ca = creds.ca_pem

    async def rotated(new: CertPair) -> None:
        if ca is not None:
            rest.update_credentials(node_credentials(creds.server, ca, new))

    return Rotator(client=lambda: rest, store=store, request=client_request(ident.node_name),
                   clock=clock, on_rotated=rotated)


async def serve(options: KubeletOptions, ns: argparse.Namespace, clock: Clock) -> int:
    ident = identity(options)
    options.root_dir.mkdir(parents=True, exist_ok=True)
    creds = await credentials(options, ns, ident, clock)
    if creds is None and options.pod_manifest_path is None:
        raise KubeletError("nothing to run: give --kubeconfig, --bootstrap-kubeconfig or "
                           "`join` for an API server, or --pod-manifest-path (standalone)")
    cri: CRIClient = open_cri(options.container_runtime_endpoint,
                              image_endpoint=options.image_service_endpoint,
                              timeout=options.runtime_request_timeout)
    rest = RestClient(creds, user_agent=f"kubelet-py/{ident.node_name}") if creds else None
    machine = collect_machine(state_dir=options.root_dir, hostname=ident.node_name)
    allocatable = node_allocatable(machine, max_pods=options.max_pods)
    volumes = Volumes(rest, root=options.root_dir, allocatable=allocatable, clock=clock)
    service_informer = Informer(rest, "/api/v1/services", clock=clock) if rest else None
    services = ServiceLinks(service_informer.store.items, service_informer.synced.is_set) \
        if service_informer is not None else ServiceLinks(None, lambda: True)
    node_informer = Informer(rest, "/api/v1/nodes", clock=clock,
                             field_selector=f"metadata.name={ident.node_name}") \
        if rest else None
    node = NodeView(node_labels(machine, options.node_labels), name=ident.node_name,
                    store=node_informer.store if node_informer is not None else None)
    pods = pod_manager(options, ident, rest=rest, cri=cri, clock=clock, volumes=volumes,
                       allocatable=allocatable, services=services, node=node)
    server = KubeletServer(pods=pods, runtime=lambda uid: pod_runtime(cri, uid),
                           auth=WebhookAuth(rest, node_name=ident.node_name, clock=clock)
                           if rest is not None else None, log_root=options.pod_logs_dir,
                           streaming=cri.streaming,
                           summary=SummaryProvider(node_name=ident.node_name,
                                                   runtime=cri.stats, pods=pods,
                                                   host=HostStats(clock=clock),
                                                   root_dir=options.root_dir, clock=clock),
                           metrics=KubeletMetrics(node_name=ident.node_name,
                                                  sandboxes=cri.sandboxes,
                                                  containers=cri.containers,
                                                  operations=cri.conn.stats))
    healthz = HealthzServer() if options.healthz_port else None
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pods.run(), name="pods")
            if service_informer is not None:
                tg.create_task(service_informer.run(), name="service-informer")
            if node_informer is not None:
                tg.create_task(node_informer.run(), name="node-informer")
            if rest is not None:
                tg.create_task(volumes.run_token_refresh(), name="token-refresh")
                node.agent = start_node_tasks(tg, options, ident, rest=rest, cri=cri,
                                              clock=clock, server=server, machine=machine)
                cert, key = serving_pair(ident, clock)
                await server.start(host=options.address, port=options.port, cert=cert,
                                   key=key, client_ca=rest.credentials.ca_pem)
            else:
                log.info("standalone mode: static pods from %s, no API server",
                         options.pod_manifest_path)
                if options.pod_cidr:
                    tg.create_task(standalone_pod_cidr(cri, options.pod_cidr, clock))
            if healthz is not None:
                await healthz.start(port=options.healthz_port)
    finally:
        await server.stop()
        if healthz is not None:
            await healthz.stop()
        if rest is not None:
            await rest.close()
        await cri.close()
    return 0


async def standalone_pod_cidr(cri: CRIClient, cidr: str, clock: Clock) -> None:
    """--pod-cidr without an API server: hand it to the runtime once it answers."""
    delay = 0.5
    while True:
        try:
            await cri.info.update_pod_cidr(cidr)
            log.info("pod CIDR %s passed to the runtime", cidr)
            return
        except KubeletError as exc:
            log.warning("pod CIDR %s not passed to the runtime yet: %s", cidr, exc)
            await clock.sleep(delay)
            delay = min(10.0, delay * 2)


def serving_pair(ident: Identity, clock: Clock) -> tuple[Path, Path]:
    """The rotated kubelet-serving certificate when there is one, else the self-signed."""
    current = CertStore(ident.paths.cert_dir, SERVER_PREFIX).current_path
    if current.exists():
        return current, current
    ips = (ident.node_ip,) if ident.node_ip else ()
    return ensure_self_signed(ident.paths.cert_dir, hostname=ident.node_name, ips=ips,
                              now=clock.now())


def start_node_tasks(tg: asyncio.TaskGroup, options: KubeletOptions, ident: Identity, *,
                     rest: RestClient, cri: CRIClient, clock: Clock,
                     server: KubeletServer, machine: MachineInfo) -> NodeAgent:
    """Registration, status, Lease, and certificate rotation: the node's side of the API."""
    ips = (ident.node_ip,) if ident.node_ip else ()
    agent = NodeAgent(rest, config=NodeConfig(
        node_name=ident.node_name, node_ip=ident.node_ip, port=options.port,
        max_pods=options.max_pods, labels=options.node_labels, state_dir=options.root_dir,
        register=options.register_node),
        machine=machine, runtime=cri.info, clock=clock)
    tg.create_task(agent.run(), name="node")
    rotator = client_rotator(rest, ident, clock) if options.rotate_certificates else None
    if rotator is not None:
        tg.create_task(rotator.run(), name="client-cert-rotation")
    if options.rotate_server_certificates:
        current = CertStore(ident.paths.cert_dir, SERVER_PREFIX).current_path

        async def serve_new(pair: CertPair) -> None:
            server.reload_certificate(current, current)

        tg.create_task(serving_rotator(
            lambda: rest, cert_dir=ident.paths.cert_dir, node_name=ident.node_name,
            ips=ips, clock=clock, on_rotated=serve_new).run(), name="serving-cert-rotation")
    return agent


def _setup_logging(verbosity: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 4 else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if verbosity < 6:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)


async def _main(options: KubeletOptions, ns: argparse.Namespace) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await serve(options, ns, RealClock())
    except asyncio.CancelledError:
        log.info("kubelet-py stopping")
        return 0


def _kubelet_errors(exc: BaseException) -> list[KubeletError]:
    if isinstance(exc, KubeletError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in _kubelet_errors(sub)]
    return []


def run(options: KubeletOptions, ns: argparse.Namespace) -> int:
    _setup_logging(options.verbosity)
    try:
        return asyncio.run(_main(options, ns))
    except (KubeletError, BaseExceptionGroup) as exc:
        errors = _kubelet_errors(exc)
        if not errors:
            raise
        for error in errors:
            sys.stderr.write(f"kubelet-py: {error}\n")
        return 1
