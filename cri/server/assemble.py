"""Compose the servicer families that the available ports allow into gRPC handlers."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from cri.server.containers import Containers
from cri.server.dispatch import Impl, generic_handler
from cri.server.events import Events
from cri.server.images import Images
from cri.server.metrics import Metrics
from cri.server.ports import Ports
from cri.server.runtime_info import RuntimeInfo
from cri.server.sandboxes import Sandboxes
from cri.server.stats import Stats
from cri.server.streams import ExecSync, StreamingEndpoints

RUNTIME_SERVICE = "RuntimeService"
IMAGE_SERVICE = "ImageService"

# RPCs no family serves yet, with the reason a client is told.
NOT_SUPPORTED = {
    "CheckpointContainer": "checkpoint/restore (CRIU) is not supported by this runtime",
    "CheckpointPod": "checkpoint/restore (CRIU) is not supported by this runtime",
    "RestorePod": "checkpoint/restore (CRIU) is not supported by this runtime",
    "UpdatePodSandboxResources": "pod-level resource updates are not supported yet",
}


def _missing(names: dict[str, Impl] | list[str], part: str) -> dict[str, str]:
    return {name: f"{part} is not wired into this engined" for name in names}


def handlers(ports: Ports, *, clock_ns: Callable[[], int] = time.time_ns,
             events_poll_s: float = 0.5) -> list[grpc.GenericRpcHandler[Any, Any]]:
    runtime: dict[str, Impl] = dict(RuntimeInfo(ports).rpcs())
    unwired: dict[str, str] = dict(NOT_SUPPORTED)

    def family(rpcs: list[str], impls: dict[str, Impl] | None, part: str) -> None:
        if impls is None:
            unwired.update(_missing(rpcs, part))
        else:
            runtime.update(impls)

    family(["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
            "ListPodSandbox", "StreamPodSandboxes"],
           Sandboxes(ports.sandboxes, clock_ns=clock_ns).rpcs() if ports.sandboxes else None,
           "the sandbox runtime")
    family(["CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
            "ListContainers", "StreamContainers", "ContainerStatus",
            "UpdateContainerResources", "ReopenContainerLog", "ExecSync"],
           {**Containers(ports.containers).rpcs(), **ExecSync(ports.containers).rpcs()}
           if ports.containers else None, "the container runtime")
    family(["Exec", "Attach", "PortForward"],
           StreamingEndpoints(ports.streaming).rpcs() if ports.streaming else None,
           "the streaming server")
    family(["ContainerStats", "ListContainerStats", "StreamContainerStats",
            "PodSandboxStats", "ListPodSandboxStats", "StreamPodSandboxStats",
            "ListMetricDescriptors", "ListPodSandboxMetrics", "StreamPodSandboxMetrics"],
           {**Stats(ports.stats).rpcs(), **Metrics(ports.stats).rpcs()} if ports.stats
           else None, "the stats collector")
    family(["GetContainerEvents"],
           Events(ports.events, poll_s=events_poll_s).rpcs() if ports.events else None,
           "the container event stream")

    images: dict[str, Impl] = Images(ports.images).rpcs() if ports.images else {}
    image_unwired = _missing(["ListImages", "StreamImages", "ImageStatus", "PullImage",
                              "RemoveImage", "ImageFsInfo"], "the image store")
    return [generic_handler(RUNTIME_SERVICE, runtime, unwired),
            generic_handler(IMAGE_SERVICE, images, image_unwired)]
