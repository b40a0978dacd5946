"""ExecSync, and the URLs of the streaming server for Exec, Attach and PortForward."""
from __future__ import annotations

import grpc

from cri.api import runtime_pb2 as pb
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import ContainerPort, StreamingPort
from engine.errors import InvalidArgument

EXEC_SYNC_OUTPUT_CAP = 16 << 20  # per stream


def _check_stdio(*, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout and stderr must be requested")
    if tty and stderr:
        raise InvalidArgument("stderr cannot be streamed separately with a tty")


class ExecSync:
    def __init__(self, port: ContainerPort) -> None:
        self._port = port

    def rpcs(self) -> dict[str, Impl]:
        return {"ExecSync": self.ExecSync}

    def ExecSync(self, request: pb.ExecSyncRequest,
                 context: grpc.ServicerContext) -> pb.ExecSyncResponse:
        container_id = v.require(request.container_id, "container_id")
        if not request.cmd:
            raise InvalidArgument("cmd is required")
        v.command_size(request.cmd, "cmd")
        timeout = v.non_negative(request.timeout, "timeout")
        result = self._port.exec_sync(container_id, list(request.cmd), timeout_s=timeout)
        return pb.ExecSyncResponse(stdout=result.stdout[:EXEC_SYNC_OUTPUT_CAP],
                                   stderr=result.stderr[:EXEC_SYNC_OUTPUT_CAP],
                                   exit_code=result.exit_code)


class StreamingEndpoints:
    def __init__(self, port: StreamingPort) -> None:
        self._port = port

    def rpcs(self) -> dict[str, Impl]:
        return {"Exec": self.Exec, "Attach": self.Attach, "PortForward": self.PortForward}

    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> pb.ExecResponse:
        v.require(request.container_id, "container_id")
        if not request.cmd:
            raise InvalidArgument("cmd is required")
        v.command_size(request.cmd, "cmd")
        _check_stdio(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr,
                     tty=request.tty)
        return pb.ExecResponse(url=self._port.prepare_exec(request))

    def Attach(self, request: pb.AttachRequest,
               context: grpc.ServicerContext) -> pb.AttachResponse:
        v.require(request.container_id, "container_id")
        _check_stdio(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr,
                     tty=request.tty)
        return pb.AttachResponse(url=self._port.prepare_attach(request))

    def PortForward(self, request: pb.PortForwardRequest,
                    context: grpc.ServicerContext) -> pb.PortForwardResponse:
        v.require(request.pod_sandbox_id, "pod_sandbox_id")
        for port in request.port:
            if not 0 < port < 65536:
                raise InvalidArgument(f"port {port} is not a TCP port")
        return pb.PortForwardResponse(url=self._port.prepare_port_forward(request))
