"""GetContainerEvents: the runtime's push stream of container lifecycle events."""
from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection, CRIError


async def container_events(conn: Connection) -> AsyncIterator[pb.ContainerEventResponse]:
    """Yield events until the stream ends; CRIError (e.g. UNIMPLEMENTED) when unsupported."""
    stream = conn.runtime.GetContainerEvents(pb.GetEventsRequest())
    try:
        async for event in stream:
            yield event
    except grpc.aio.AioRpcError as exc:
        raise CRIError("GetContainerEvents", exc.code(), exc.details() or "") from exc
    finally:
        stream.cancel()


def is_unimplemented(exc: CRIError) -> bool:
    return exc.code == grpc.StatusCode.UNIMPLEMENTED
