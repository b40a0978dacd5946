"""Carry out a plan with CRI calls: sandbox, image pull, create and start, stop and remove."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Protocol

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client import CRIClient, CRIError
from kubelet_py.errors import KubeletError
from kubelet_py.pods.cri_config import (
    ConfigProblem,
    NodeContext,
    container_config,
    sandbox_config,
)
from kubelet_py.pods.downward import PodPlacement
from kubelet_py.pods.envvars import EnvError, ObjectGetter, build_environment
from kubelet_py.pods.model import Pod, PodRuntime, State
from kubelet_py.pods.runtime_view import sandbox_from_status
from kubelet_py.pods.service_env import ServiceLinks, ServicesNotSynced
from kubelet_py.pods.userns import UserNamespaces
from kubelet_py.pods.userns_range import UsernsError
from kubelet_py.pods.volumes import PreparedVolume, VolumeError

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class StartError(KubeletError):
    """Starting a container failed; `reason` becomes its waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SandboxError(KubeletError):
    pass


class PullAuth(Protocol):
    async def auth_for(self, pod: Pod, image: str) -> pb.AuthConfig | None: ...


class VolumePreparer(Protocol):
    async def prepare(self, pod: Pod) -> dict[str, PreparedVolume]: ...


@dataclasses.dataclass(frozen=True)
class Started:
    container_id: str
    image_ref: str
    warnings: tuple[str, ...] = ()
    """Problems that did not stop the start (envFrom keys skipped as invalid names)."""


class Executor:
    def __init__(self, cri: CRIClient, *, ctx: NodeContext, volumes: VolumePreparer,
                 auth: PullAuth, objects: ObjectGetter | None,
                 services: ServiceLinks, userns: UserNamespaces) -> None:
        self._cri = cri
        self._userns = userns
        self._ctx = ctx
        self._volumes = volumes
        self._auth = auth
        self._objects = objects
        """Where ConfigMaps and Secrets for the environment come from (None: standalone)."""
        self._services = services

    async def create_sandbox(self, pod: Pod, attempt: int, *, runtime_handler: str = "") -> str:
        try:
            userns = await self._userns.for_sandbox(pod, runtime_handler)
        except UsernsError as exc:
            raise SandboxError(f"Failed to create pod sandbox: {exc}") from exc
        config = sandbox_config(self._ctx, pod, attempt=attempt, userns=userns)
        try:
            return await self._cri.sandboxes.run(config, runtime_handler=runtime_handler)
        except CRIError as exc:
            raise SandboxError(f"Failed to create pod sandbox: {exc.details}") from exc

    async def sandbox_ips(self, sandbox_id: str) -> tuple[str, ...]:
        """The new sandbox's addresses (one status call, not a relist of the pod)."""
        try:
            return sandbox_from_status(await self._cri.sandboxes.status(sandbox_id)).ips
        except CRIError as exc:
            raise SandboxError(f"Failed to read the new pod sandbox: {exc.details}") from exc

    async def ensure_image(self, pod: Pod, spec: Obj,
                           sandbox: pb.PodSandboxConfig) -> str:
        image = spec["image"]
        policy = spec.get("imagePullPolicy") or (
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]
            else "IfNotPresent")
        if policy != "Always":
            try:
                present = await self._cri.images.status(image)
            except CRIError as exc:
                raise StartError("ErrImagePull", f"image status {image}: {exc.details}") \
                    from exc
            if present is not None:
                return present.id
            if policy == "Never":
                raise StartError("ErrImageNeverPull", f'Container image "{image}" is not '
                                 "present with pull policy of Never")
        auth = await self._auth.auth_for(pod, image)
        try:
            return await self._cri.images.pull(image, auth=auth, sandbox_config=sandbox)
        except CRIError as exc:
            raise StartError("ErrImagePull", f'failed to pull image "{image}": '
                             f"{exc.details}") from exc

    async def start_container(self, pod: Pod, spec: Obj, *, sandbox_id: str,
                              sandbox_attempt: int, attempt: int,
                              pod_ips: tuple[str, ...]) -> Started:
        try:
            userns = self._userns.for_container(pod)
        except UsernsError as exc:
            raise StartError("CreateContainerConfigError", str(exc)) from exc
        sandbox = sandbox_config(self._ctx, pod, attempt=sandbox_attempt, userns=userns)
        image_ref = await self.ensure_image(pod, spec, sandbox)
        where = PodPlacement(node_name=self._ctx.node_name, host_ips=self._ctx.host_ips,
                             pod_ips=pod_ips)
        try:
            volumes = await self._volumes.prepare(pod)
            links = pod["spec"].get("enableServiceLinks") is not False
            environment = await build_environment(
                pod, spec, api=self._objects, where=where, allocatable=self._ctx.allocatable,
                services=self._services.env_for(pod["metadata"]["namespace"], links=links))
            config = container_config(self._ctx, pod, spec, attempt=attempt, volumes=volumes,
                                      image_ref=image_ref, environment=environment,
                                      userns=userns)
        except (VolumeError, ConfigProblem, EnvError, ServicesNotSynced) as exc:
            raise StartError("CreateContainerConfigError", str(exc)) from exc
        try:
            cid = await self._cri.containers.create(sandbox_id, config, sandbox)
        except CRIError as exc:
            raise StartError("CreateContainerError", exc.details) from exc
        try:
            await self._cri.containers.start(cid)
        except CRIError as exc:
            raise StartError("RunContainerError", exc.details) from exc
        return Started(container_id=cid, image_ref=image_ref, warnings=environment.skipped)

    async def exec(self, container_id: str, cmd: list[str], timeout: int) -> int:
        """Exit code of a command run in the container (exec probes); -1 if it cannot run."""
        try:
            resp = await self._cri.containers.exec_sync(container_id, cmd, timeout=timeout)
        except CRIError as exc:
            log.debug("exec in %s failed: %s", container_id, exc)
            return -1
        return int(resp.exit_code)

    async def stop_container(self, container_id: str, *, grace: int) -> None:
        try:
            await self._cri.containers.stop(container_id, timeout=grace)
        except CRIError as exc:
            if not exc.not_found:
                raise

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._cri.containers.remove(container_id)
        except CRIError as exc:
            if not exc.not_found:
                raise

    async def kill_pod(self, runtime: PodRuntime, *, grace: int) -> None:
        """Stop every running container (SIGTERM, SIGKILL after `grace` s), then sandboxes."""
        running = [c for c in runtime.containers if c.state in (State.RUNNING, State.CREATED,
                                                                State.UNKNOWN)]
        results = await asyncio.gather(
            *(self._cri.containers.stop(c.id, timeout=grace) for c in running),
            return_exceptions=True)
        for c, result in zip(running, results, strict=True):
            if isinstance(result, CRIError) and not result.not_found:
                raise result
            if isinstance(result, BaseException) and not isinstance(result, CRIError):
                raise result
            log.debug("stopped container %s (%s)", c.name, c.id)
        for sb in runtime.sandboxes:
            try:
                await self._cri.sandboxes.stop(sb.id)
            except CRIError as exc:
                if not exc.not_found:
                    raise

    async def remove_pod(self, runtime: PodRuntime) -> None:
        for c in runtime.containers:
            await self.remove_container(c.id)
        for sb in runtime.sandboxes:
            try:
                await self._cri.sandboxes.remove(sb.id)
            except CRIError as exc:
                if not exc.not_found:
                    raise
