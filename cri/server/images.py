"""ImageService: ListImages, StreamImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo."""
from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import grpc

from cri.api import runtime_pb2 as pb
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import ImagePort, ImageRecord, RegistryAuth
from engine.errors import InvalidArgument, NotFound

MAX_REFERENCE_LENGTH = 4096


def to_image(record: ImageRecord) -> pb.Image:
    image = pb.Image(id=record.id, repo_tags=record.repo_tags,
                     repo_digests=record.repo_digests, size=record.size,
                     username=record.username, pinned=record.pinned,
                     spec=pb.ImageSpec(image=record.id))
    if record.uid is not None:
        image.uid.value = record.uid
    return image


def image_matches(record: ImageRecord, wanted: str) -> bool:
    """A filter names an image by ID (or its prefix), tag or digest reference."""
    if not wanted:
        return True
    return (record.id.startswith(wanted) or wanted in record.repo_tags
            or wanted in record.repo_digests)


def to_auth(auth: pb.AuthConfig) -> RegistryAuth | None:
    if auth.ByteSize() == 0:
        return None
    return RegistryAuth(username=auth.username, password=auth.password, auth=auth.auth,
                        server_address=auth.server_address,
                        identity_token=auth.identity_token,
                        registry_token=auth.registry_token)


def _reference(spec: pb.ImageSpec) -> str:
    ref = v.require(spec.image, "image.image")
    if len(ref) > MAX_REFERENCE_LENGTH or any(c.isspace() or c == "\x00" for c in ref):
        raise InvalidArgument(f"image.image {ref[:100]!r} is not an image reference")
    return ref


class Images:
    def __init__(self, port: ImagePort) -> None:
        self._port = port

    def rpcs(self) -> dict[str, Impl]:
        return {"ListImages": self.ListImages, "StreamImages": self.StreamImages,
                "ImageStatus": self.ImageStatus, "PullImage": self.PullImage,
                "RemoveImage": self.RemoveImage, "ImageFsInfo": self.ImageFsInfo}

    def _listed(self, flt: pb.ImageFilter) -> list[pb.Image]:
        return [to_image(r) for r in self._port.list_images()
                if image_matches(r, flt.image.image)]

    def ListImages(self, request: pb.ListImagesRequest,
                   context: grpc.ServicerContext) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(images=self._listed(request.filter))

    def StreamImages(self, request: pb.StreamImagesRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.StreamImagesResponse]:
        for batch in v.batches(self._listed(request.filter)):
            yield pb.StreamImagesResponse(images=batch)

    def ImageStatus(self, request: pb.ImageStatusRequest,
                    context: grpc.ServicerContext) -> pb.ImageStatusResponse:
        record = self._port.image_status(_reference(request.image))
        if record is None:
            return pb.ImageStatusResponse()  # absent: an empty image, not an error
        response = pb.ImageStatusResponse(image=to_image(record))
        if request.verbose:
            response.info["info"] = json.dumps(dataclasses.asdict(record), sort_keys=True)
        return response

    def PullImage(self, request: pb.PullImageRequest,
                  context: grpc.ServicerContext) -> pb.PullImageResponse:
        image_id = self._port.pull_image(_reference(request.image), auth=to_auth(request.auth))
        return pb.PullImageResponse(image_ref=image_id)

    def RemoveImage(self, request: pb.RemoveImageRequest,
                    context: grpc.ServicerContext) -> pb.RemoveImageResponse:
        with contextlib.suppress(NotFound):  # idempotent: already gone
            self._port.remove_image(_reference(request.image))
        return pb.RemoveImageResponse()

    def ImageFsInfo(self, request: pb.ImageFsInfoRequest,
                    context: grpc.ServicerContext) -> pb.ImageFsInfoResponse:
        return pb.ImageFsInfoResponse(image_filesystems=[
            pb.FilesystemUsage(timestamp=u.timestamp_ns,
                               fs_id=pb.FilesystemIdentifier(mountpoint=u.mountpoint),
                               used_bytes=pb.UInt64Value(value=u.used_bytes),
                               inodes_used=pb.UInt64Value(value=u.inodes_used))
            for u in self._port.image_fs_usage()])
