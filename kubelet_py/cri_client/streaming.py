"""Streaming RPCs: Exec, Attach and PortForward answer with a URL on the runtime's
streaming server; the kubelet's HTTPS server proxies the client's connection there."""
from __future__ import annotations

from collections.abc import Sequence

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection


class Streaming:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str:
        resp: pb.ExecResponse = await self._c.call(
            "Exec", self._c.runtime.Exec,
            pb.ExecRequest(container_id=container_id, cmd=list(cmd), tty=tty, stdin=stdin,
                           stdout=stdout, stderr=stderr))
        return resp.url

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str:
        resp: pb.AttachResponse = await self._c.call(
            "Attach", self._c.runtime.Attach,
            pb.AttachRequest(container_id=container_id, tty=tty, stdin=stdin,
                             stdout=stdout, stderr=stderr))
        return resp.url

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str:
        resp: pb.PortForwardResponse = await self._c.call(
            "PortForward", self._c.runtime.PortForward,
            pb.PortForwardRequest(pod_sandbox_id=sandbox_id, port=list(ports)))
        return resp.url
