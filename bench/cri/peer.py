"""The peer for the unary-RPC figures: a private containerd (runc) holding N real pods.

The pods are made through containerd's own CRI (RunPodSandbox, CreateContainer,
StartContainer: a pause sandbox and a sleeping busybox container each) with host networking,
since the figures are about reading state, not about the network. Images come from a
private local registry; nothing is pulled from the internet.
"""
from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc as pb_grpc
from tests.harness import containerd, registry

IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


def make_pods(endpoint: str, *, pods: int, containers_per_pod: int) -> list[str]:
    with grpc.insecure_channel(endpoint) as channel:
        rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        im = pb_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]
        im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=IMAGE)), timeout=300)
        host_net = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE)))
        cids = []
        for i in range(pods):
            uid = secrets.token_hex(16)
            config = pb.PodSandboxConfig(
                metadata=pb.PodSandboxMetadata(name=f"bench-{i}", namespace="bench", uid=uid),
                labels={"io.kubernetes.pod.name": f"bench-{i}", "app": "bench"},
                linux=host_net)
            sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config),
                                   timeout=120).pod_sandbox_id
            for j in range(containers_per_pod):
                cid = rt.CreateContainer(pb.CreateContainerRequest(
                    pod_sandbox_id=sid, sandbox_config=config,
                    config=pb.ContainerConfig(
                        metadata=pb.ContainerMetadata(name=f"c{j}"),
                        image=pb.ImageSpec(image=IMAGE), command=["sleep", "3600"],
                        labels={"io.kubernetes.container.name": f"c{j}"})),
                    timeout=120).container_id
                rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
                cids.append(cid)
        return cids


@contextlib.contextmanager
def private_containerd(root: Path, *, tools: Path) -> Iterator[str]:
    """containerd with its own registry, root and socket; removes every pod it ran."""
    reg = registry.up(root / "registry")
    try:
        instance, proc = containerd.start(root / "containerd", reg, tools=tools)
        try:
            yield instance.endpoint
        finally:
            containerd.stop(instance, proc, tools=tools)
    finally:
        registry.down(root / "registry")
