"""The kubeletpy.engine.v1 EngineService: what enginectl needs beyond the CRI.

It serves on engined's CRI socket beside runtime.v1 (see `handler`). Like the CRI
families it keeps no state; every failure becomes the gRPC status `cri.errors.status_for`
names. Archives travel as chunk streams rather than paths, so a client with access to the
socket never makes the root daemon read or write a path of its choosing.
"""
from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import grpc

from cri.api import engine_pb2 as epb
from cri.errors import is_mapped, status_for
from cri.server.enginesvc_convert import image_detail, layer_node, progress_message
from engine.errors import InvalidArgument
from engine.graph.graph import GcStats
from engine.graph.model import Image
from engine.graph.pull import ProgressFn, PullEvent
from engine.graph.tree import LayerNode
from engine.registry.auth import AuthConfig
from engine.registry.reference import parse

log = logging.getLogger(__name__)

SERVICE = "kubeletpy.engine.v1.EngineService"
CHUNK_BYTES = 1 << 20
_POLL_S = 0.2


class ImageEngine(Protocol):
    """The part of engine.images.ImageService this service uses."""

    def pull(self, ref: str, auth: AuthConfig | None = None,
             progress: ProgressFn | None = None) -> Image: ...

    def get(self, ref: str) -> Image: ...

    def remove(self, ref: str) -> GcStats: ...

    def untag(self, ref: str) -> None: ...

    def layer_graph(self) -> list[LayerNode]: ...

    def load(self, path: Path) -> list[Image]: ...

    def save(self, refs: list[str], path: Path) -> None: ...


def _tag_of(ref: str) -> str | None:
    """The normalized `name:tag` a reference names, or None for IDs and digests."""
    try:
        parsed = parse(ref)
    except InvalidArgument:
        return None
    return None if parsed.digest else str(parsed)


class EngineService:
    def __init__(self, images: ImageEngine, *, spool_dir: Path) -> None:
        self._images = images
        self._spool = spool_dir

    def pull_image(self, request: epb.PullImageRequest,
                   context: grpc.ServicerContext) -> Iterator[epb.PullProgress]:
        if not request.ref:
            raise InvalidArgument("an image reference is required")
        creds = request.credentials
        auth = AuthConfig(username=creds.username, password=creds.password) \
            if request.HasField("credentials") else None
        events: queue.Queue[PullEvent | Image | BaseException] = queue.Queue()

        def work() -> None:
            try:
                events.put(self._images.pull(request.ref, auth, events.put))
            except BaseException as exc:  # handed to the RPC thread, raised there
                events.put(exc)

        threading.Thread(target=work, name="enginesvc-pull", daemon=True).start()
        while True:
            try:
                item = events.get(timeout=_POLL_S)
            except queue.Empty:
                if not context.is_active():  # the client went away; the pull completes
                    return
                continue
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Image):
                yield epb.PullProgress(phase="done", image_id=item.id)
                return
            if item.phase != "done":  # the final message carries the image ID instead
                yield progress_message(item)

    def inspect_image(self, request: epb.InspectImageRequest,
                      context: grpc.ServicerContext) -> epb.ImageDetail:
        return image_detail(self._images.get(request.ref))

    def remove_image(self, request: epb.RemoveImageRequest,
                     context: grpc.ServicerContext) -> epb.RemoveImageResponse:
        image = self._images.get(request.ref)
        tag = _tag_of(request.ref)
        if tag is not None and tag in image.repo_tags and len(image.repo_tags) > 1:
            self._images.untag(tag)
            return epb.RemoveImageResponse(untagged=[tag])
        self._images.remove(image.id)
        return epb.RemoveImageResponse(untagged=[*image.repo_tags, *image.repo_digests],
                                       deleted=[image.id])

    def layer_graph(self, request: epb.LayerGraphRequest,
                    context: grpc.ServicerContext) -> epb.LayerGraphResponse:
        return epb.LayerGraphResponse(roots=[layer_node(n) for n in self._images.layer_graph()])

    def load_images(self, chunks: Iterable[epb.ArchiveChunk],
                    context: grpc.ServicerContext) -> epb.LoadImagesResponse:
        self._spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="load-", suffix=".tar", dir=self._spool)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk.data)
            loaded = self._images.load(path)
        finally:
            path.unlink(missing_ok=True)
        return epb.LoadImagesResponse(
            images=[epb.LoadedImage(id=i.id, repo_tags=i.repo_tags) for i in loaded])

    def save_images(self, request: epb.SaveImagesRequest,
                    context: grpc.ServicerContext) -> Iterator[epb.ArchiveChunk]:
        if not request.refs:
            raise InvalidArgument("at least one image reference is required")
        self._spool.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="save-", dir=self._spool) as tmp:
            path = Path(tmp) / "images.tar"
            self._images.save(list(request.refs), path)
            with path.open("rb") as f:
                while data := f.read(CHUNK_BYTES):
                    yield epb.ArchiveChunk(data=data)


def _guard(name: str, impl: Callable[[Any, grpc.ServicerContext], Any]
           ) -> Callable[[Any, grpc.ServicerContext], Any]:
    def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
        status = status_for(exc)
        if not is_mapped(exc):
            log.exception("%s failed unexpectedly", name)
        context.abort(status.code, f"{name}: {status.message}")

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return impl(request, context)
        except Exception as exc:
            abort(context, exc)
            raise

    return unary


def _guard_stream(name: str, impl: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
                  ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from impl(request, context)
        except Exception as exc:
            status = status_for(exc)
            if not is_mapped(exc):
                log.exception("%s failed unexpectedly", name)
            context.abort(status.code, f"{name}: {status.message}")
    return stream


def handler(images: ImageEngine, *, spool_dir: Path) -> grpc.GenericRpcHandler[Any, Any]:
    """The EngineService handler to add to engined's gRPC server."""
    svc = EngineService(images, spool_dir=spool_dir)
    des = {name: getattr(epb, name).FromString for name in (
        "PullImageRequest", "InspectImageRequest", "RemoveImageRequest", "LayerGraphRequest",
        "ArchiveChunk", "SaveImagesRequest")}

    def ser(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "PullImage": grpc.unary_stream_rpc_method_handler(
            _guard_stream("PullImage", svc.pull_image),
            request_deserializer=des["PullImageRequest"], response_serializer=ser),
        "InspectImage": grpc.unary_unary_rpc_method_handler(
            _guard("InspectImage", svc.inspect_image),
            request_deserializer=des["InspectImageRequest"], response_serializer=ser),
        "RemoveImage": grpc.unary_unary_rpc_method_handler(
            _guard("RemoveImage", svc.remove_image),
            request_deserializer=des["RemoveImageRequest"], response_serializer=ser),
        "LayerGraph": grpc.unary_unary_rpc_method_handler(
            _guard("LayerGraph", svc.layer_graph),
            request_deserializer=des["LayerGraphRequest"], response_serializer=ser),
        "LoadImages": grpc.stream_unary_rpc_method_handler(
            _guard("LoadImages", svc.load_images),
            request_deserializer=des["ArchiveChunk"], response_serializer=ser),
        "SaveImages": grpc.unary_stream_rpc_method_handler(
            _guard_stream("SaveImages", svc.save_images),
            request_deserializer=des["SaveImagesRequest"], response_serializer=ser),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)
