"""A typed asyncio client for the CRI (runtime.v1) over gRPC: any runtime, same code."""
from __future__ import annotations

import dataclasses

from kubelet_py.cri_client.connection import Connection, CRIError, connect
from kubelet_py.cri_client.containers import Containers
from kubelet_py.cri_client.images import Images
from kubelet_py.cri_client.info import RuntimeInfo
from kubelet_py.cri_client.sandboxes import Sandboxes
from kubelet_py.cri_client.stats import Stats
from kubelet_py.cri_client.streaming import Streaming


@dataclasses.dataclass(frozen=True)
class CRIClient:
    conn: Connection
    info: RuntimeInfo
    sandboxes: Sandboxes
    containers: Containers
    images: Images
    streaming: Streaming
    stats: Stats

    async def close(self) -> None:
        await self.conn.close()


def open_cri(endpoint: str, *, image_endpoint: str | None = None,
             timeout: float = 120.0) -> CRIClient:
    conn = connect(endpoint, image_endpoint=image_endpoint, timeout=timeout)
    return CRIClient(conn=conn, info=RuntimeInfo(conn), sandboxes=Sandboxes(conn),
                     containers=Containers(conn), images=Images(conn),
                     streaming=Streaming(conn), stats=Stats(conn))


__all__ = ["CRIClient", "CRIError", "open_cri"]
