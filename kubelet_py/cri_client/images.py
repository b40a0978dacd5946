"""Image RPCs."""
from __future__ import annotations

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection


class Images:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def status(self, image: str) -> pb.Image | None:
        resp: pb.ImageStatusResponse = await self._c.call(
            "ImageStatus", self._c.image.ImageStatus,
            pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
        return resp.image if resp.HasField("image") else None

    async def pull(self, image: str, *, auth: pb.AuthConfig | None = None,
                   sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        """Pull and return the image reference the runtime stored (its ID or digest)."""
        resp: pb.PullImageResponse = await self._c.call(
            "PullImage", self._c.image.PullImage,
            pb.PullImageRequest(image=pb.ImageSpec(image=image), auth=auth,
                                sandbox_config=sandbox_config),
            timeout=max(self._c.timeout, 600.0))
        return resp.image_ref
