"""Table-driven gRPC handlers for one runtime.v1 service.

Every method of the service (read from the descriptor of our .proto) gets a handler:
the implementation a family registered, or a precise UNIMPLEMENTED. Each handler turns
undecodable request bytes into INVALID_ARGUMENT and the exceptions an implementation
raises into the status `cri.errors.status_for` names, so implementations never touch
`context.abort` and never leak a Python traceback to the client.

A response object, once returned, is never mutated: the read RPCs hand back the same
object while nothing changed, and the encoded bytes of big ones are kept by identity.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import message as pb_message

from cri.api import runtime_pb2
from cri.errors import MalformedRequest, Unimplemented, is_mapped, status_for

log = logging.getLogger(__name__)

Message = pb_message.Message
UnaryImpl = Callable[[Any, grpc.ServicerContext], Message]
StreamImpl = Callable[[Any, grpc.ServicerContext], Iterator[Message]]
Impl = UnaryImpl | StreamImpl


@dataclasses.dataclass(frozen=True)
class Method:
    service: str  # "runtime.v1.RuntimeService"
    name: str
    request: type[Message]
    response: type[Message]
    server_streaming: bool


@dataclasses.dataclass(frozen=True)
class _Undecodable:
    """What the deserializer hands over when the bytes are not a valid request."""

    error: str


def service_methods(service: str) -> dict[str, Method]:
    """The methods of `RuntimeService` or `ImageService`, from our descriptor."""
    desc = runtime_pb2.DESCRIPTOR.services_by_name[service]
    return {
        m.name: Method(service=desc.full_name, name=m.name,
                       request=getattr(runtime_pb2, m.input_type.name),
                       response=getattr(runtime_pb2, m.output_type.name),
                       server_streaming=m.server_streaming)
        for m in desc.methods
    }


def _deserializer(cls: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    def decode(data: bytes) -> Message | _Undecodable:
        try:
            return cls.FromString(data)
        except pb_message.DecodeError as exc:
            return _Undecodable(f"{exc}")
    return decode


KEEP_ENCODED_FROM = 4096  # bytes: smaller answers cost less to encode than to remember
KEEP_ENCODED = 16  # answers remembered per method


def _serializer(cls: type[Message]) -> Callable[[Message], bytes]:
    """SerializeToString, remembering the bytes of the last few big answers (a listing of
    110 containers is ~60 kB: encoding it costs more than the RPC's lookup)."""
    kept: dict[int, tuple[Message, bytes]] = {}

    def encode(message: Message) -> bytes:
        known = kept.get(id(message))
        if known is not None and known[0] is message:  # the same object, alive: same id
            return known[1]
        data = message.SerializeToString()
        if len(data) >= KEEP_ENCODED_FROM:
            if len(kept) >= KEEP_ENCODED:
                kept.clear()
            kept[id(message)] = (message, data)
        return data
    return encode


def _abort(context: grpc.ServicerContext, method: Method, exc: BaseException) -> None:
    status = status_for(exc)
    if is_mapped(exc):
        log.debug("%s: %s: %s", method.name, status.code.name, status.message)
    else:
        log.exception("%s failed unexpectedly", method.name)
    context.abort(status.code, f"{method.name}: {status.message}")


def _checked(method: Method, request: Message | _Undecodable) -> Message:
    if isinstance(request, _Undecodable):
        raise MalformedRequest(
            f"request is not a valid {method.request.DESCRIPTOR.full_name}: {request.error}")
    return request


def _unary(method: Method, impl: UnaryImpl) -> Callable[[Any, grpc.ServicerContext], Message]:
    def handle(request: Message | _Undecodable, context: grpc.ServicerContext) -> Message:
        try:
            return impl(_checked(method, request), context)
        except Exception as exc:  # every failure becomes a status, see _abort
            _abort(context, method, exc)
            raise  # unreachable: abort raises
    return handle


def _stream(method: Method,
            impl: StreamImpl) -> Callable[[Any, grpc.ServicerContext], Iterator[Message]]:
    def handle(request: Message | _Undecodable,
               context: grpc.ServicerContext) -> Iterator[Message]:
        try:
            yield from impl(_checked(method, request), context)
        except Exception as exc:
            _abort(context, method, exc)
            raise
    return handle


def _unimplemented(method: Method, reason: str) -> Impl:
    def refuse(request: Message, context: grpc.ServicerContext) -> Message:
        raise Unimplemented(reason)
    if not method.server_streaming:
        return refuse

    def refuse_stream(request: Message, context: grpc.ServicerContext) -> Iterator[Message]:
        raise Unimplemented(reason)
        yield  # pragma: no cover  (makes this a generator)
    return refuse_stream


def generic_handler(service: str, impls: Mapping[str, Impl],
                    unwired: Mapping[str, str]) -> grpc.GenericRpcHandler[Any, Any]:
    """One handler for every method of `service`.

    `impls` maps method names to implementations; `unwired` gives, for methods without
    one, why (e.g. "no image store in this build"); anything else is "not supported".
    """
    methods = service_methods(service)
    unknown = set(impls) - set(methods)
    if unknown:
        raise ValueError(f"{service} has no methods {sorted(unknown)}")
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, method in methods.items():
        impl = impls.get(name) or _unimplemented(
            method, unwired.get(name, "not supported by this runtime"))
        deserialize = _deserializer(method.request)
        serialize = _serializer(method.response)
        if method.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _stream(method, impl),  # type: ignore[arg-type]
                request_deserializer=deserialize, response_serializer=serialize)
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _unary(method, impl),  # type: ignore[arg-type]
                request_deserializer=deserialize, response_serializer=serialize)
    return grpc.method_handlers_generic_handler(
        runtime_pb2.DESCRIPTOR.services_by_name[service].full_name, handlers)
