"""The streaming server: loopback HTTP that upgrades to SPDY/3.1 or WebSocket.

Exec, Attach and PortForward (the CRI RPCs) call `prepare_*`, which checks the target,
stores the request under a single-use token and returns `http://127.0.0.1:<port>/<kind>/
<token>`. The client (crictl, or the kubelet proxying for the apiserver) then connects
there within a minute. The server runs its own asyncio loop in one thread; the runtime's
coroutines run on that loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable

from cri.api import runtime_pb2 as pb
from cri.streaming import http, negotiate, spdy_session, ws_session
from cri.streaming import websocket as ws
from cri.streaming.session import PortConnection, SessionIO, StreamRuntime
from cri.streaming.tokens import TokenStore
from engine.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

Request = pb.ExecRequest | pb.AttachRequest | pb.PortForwardRequest
KINDS: dict[type[Request], str] = {pb.ExecRequest: "exec", pb.AttachRequest: "attach",
                                   pb.PortForwardRequest: "portforward"}


@dataclasses.dataclass(frozen=True)
class _Upgrade:
    kind: str  # "websocket" | "spdy"
    protocol: str


def _negotiate(req: http.Request, *, port_forward: bool) -> tuple[_Upgrade, dict[str, str]]:
    upgrade = req.upgrade()
    if upgrade == "websocket":
        key = req.header("Sec-WebSocket-Key")
        if not key:
            raise InvalidArgument("WebSocket upgrade without Sec-WebSocket-Key")
        server: tuple[str, ...] = (negotiate.WEBSOCKET_PORTFORWARD if port_forward
                                   else negotiate.WEBSOCKET_REMOTECOMMAND)
        protocol = negotiate.choose(server, req.header_values("Sec-WebSocket-Protocol"))
        return _Upgrade("websocket", protocol), {
            "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Accept": ws.accept_key(key), "Sec-WebSocket-Protocol": protocol}
    if upgrade == "spdy/3.1":
        server = negotiate.SPDY_PORTFORWARD if port_forward else negotiate.SPDY_REMOTECOMMAND
        protocol = negotiate.choose(server, req.header_values(negotiate.STREAM_PROTOCOL_HEADER))
        return _Upgrade("spdy", protocol), {
            "Connection": "Upgrade", "Upgrade": "SPDY/3.1",
            negotiate.STREAM_PROTOCOL_HEADER: protocol}
    raise InvalidArgument("expected an upgrade to SPDY/3.1 or websocket")


def _query_ports(req: http.Request) -> list[int]:
    try:
        ports = [int(p) for p in req.query.get("port", [])]
    except ValueError as exc:
        raise InvalidArgument(f"bad port in query: {exc}") from exc
    if any(not 0 < p < 65536 for p in ports):
        raise InvalidArgument(f"ports {ports} out of range")
    return ports


class StreamingServer:
    """Implements cri.server.ports.StreamingPort over a StreamRuntime."""

    def __init__(self, runtime: StreamRuntime, *, host: str = "127.0.0.1", port: int = 0,
                 tokens: TokenStore[Request] | None = None) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidArgument(f"the streaming server binds to loopback only, not {host}")
        self._runtime = runtime
        self._host, self._port = host, port
        self._tokens: TokenStore[Request] = tokens or TokenStore()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._handle, self._host, self._port, limit=http.MAX_HEAD))
            except OSError as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="cri-streaming", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise Unavailable(f"streaming server cannot listen on {self._host}: {failure[0]}")
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        self.base_url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        log.info("streaming server on %s", self.base_url)

    def stop(self) -> None:
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await server.wait_closed()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(10)
        self._loop = self._server = self._thread = None

    # StreamingPort ------------------------------------------------------------------
    def _url(self, request: Request) -> str:
        if not self.base_url:
            raise Unavailable("the streaming server is not running")
        return f"{self.base_url}/{KINDS[type(request)]}/{self._tokens.issue(request)}"

    def prepare_exec(self, request: pb.ExecRequest) -> str:
        self._runtime.check_container(request.container_id)
        return self._url(request)

    def prepare_attach(self, request: pb.AttachRequest) -> str:
        self._runtime.check_attach(request.container_id)
        return self._url(request)

    def prepare_port_forward(self, request: pb.PortForwardRequest) -> str:
        self._runtime.check_sandbox(request.pod_sandbox_id)
        return self._url(request)

    # connections --------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("streaming connection failed")
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await http.read_request(reader)
            kind, _, token = req.path.strip("/").partition("/")
            if req.method not in ("GET", "POST"):
                writer.write(http.response(405, body="only GET and POST\n"))
                return
            session = self._tokens.consume(token)
            if KINDS.get(type(session)) != kind:
                raise NotFound(f"token is not for {kind}")
            upgrade, headers = _negotiate(req, port_forward=kind == "portforward")
        except NotFound as exc:
            writer.write(http.response(404, body=f"{exc}\n"))
            return
        except InvalidArgument as exc:
            status = 403 if "no common stream protocol" in str(exc) else 400
            writer.write(http.response(status, body=f"{exc}\n"))
            return
        writer.write(http.response(101, headers))
        await writer.drain()
        await self._run(session, upgrade, req, reader, writer)

    async def _run(self, session: Request, upgrade: _Upgrade, req: http.Request,
                   reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        runtime = self._runtime
        if isinstance(session, pb.PortForwardRequest):
            sandbox = session.pod_sandbox_id

            def connect(port: int) -> Awaitable[PortConnection]:
                return runtime.connect(sandbox, port)

            if upgrade.kind == "spdy":
                await spdy_session.port_forward(spdy_session.SpdyConn(reader, writer),
                                                set(session.port), connect)
            elif upgrade.protocol.startswith(negotiate.SPDY_TUNNEL_PREFIX):
                tunnel = ws_session.Tunnel(ws_session.WsConn(reader, writer))
                try:
                    await spdy_session.port_forward(
                        spdy_session.SpdyConn(tunnel.reader, tunnel), set(session.port),
                        connect)
                finally:
                    await tunnel.close()
            else:
                ports = _query_ports(req) or list(session.port)
                if session.port and not set(ports) <= set(session.port):
                    raise InvalidArgument(f"ports {ports} were not all requested")
                await ws_session.port_forward(ws_session.WsConn(reader, writer),
                                              ws.ChannelCodec(upgrade.protocol), ports,
                                              connect)
            return
        run: Callable[[SessionIO], Awaitable[int]]
        if isinstance(session, pb.ExecRequest):
            exec_request = session
            run = lambda io: runtime.exec(exec_request, io)  # noqa: E731
        else:
            attach_request = session
            run = lambda io: runtime.attach(attach_request, io)  # noqa: E731
        stdio = {"stdin": session.stdin, "stdout": session.stdout, "stderr": session.stderr,
                 "tty": session.tty}
        if upgrade.kind == "spdy":
            await spdy_session.remote_command(spdy_session.SpdyConn(reader, writer), run=run,
                                              **stdio)
        else:
            await ws_session.remote_command(ws_session.WsConn(reader, writer),
                                            ws.ChannelCodec(upgrade.protocol), run=run, **stdio)

