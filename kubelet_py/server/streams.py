"""`/exec`, `/attach` and `/portForward`: ask the runtime for a streaming URL (CRI Exec,
Attach, PortForward) and proxy the client's upgraded connection to it, as upstream does
by default (no redirect)."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from kubelet_py.errors import KubeletError
from kubelet_py.pods.model import Pod, PodRuntime, State
from kubelet_py.server.upgrade_proxy import StreamProxyError, proxy_upgrade

log = logging.getLogger(__name__)


class StreamingRuntime(Protocol):
    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str: ...

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str: ...

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str: ...


class PodFinder(Protocol):
    def find(self, namespace: str, name: str) -> Pod | None: ...


class StreamRequestError(KubeletError):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: tuple[str, ...] = ()


def _flag(query: Any, key: str) -> bool:
    return str(query.get(key, "")).lower() in ("1", "true")


def stream_options(query: Any, *, exec_: bool) -> StreamOptions:
    """The streams asked for, in the query names the API server sends (`input`, `output`,
    `error`, `tty`, `command`): at least one stream; a TTY merges stderr into stdout;
    exec needs a command."""
    tty = _flag(query, "tty")
    opts = StreamOptions(stdin=_flag(query, "input"), stdout=_flag(query, "output"),
                         stderr=_flag(query, "error") and not tty, tty=tty,
                         command=tuple(query.getall("command", ())))
    if not (opts.stdin or opts.stdout or _flag(query, "error")):
        raise StreamRequestError(400, "BadRequest",
                                 "you must specify at least 1 of stdin, stdout, stderr")
    if exec_ and not opts.command:
        raise StreamRequestError(400, "BadRequest", "you must specify a command")
    return opts


def forward_ports(query: Any) -> tuple[int, ...]:
    ports = []
    for value in query.getall("port", ()):
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise StreamRequestError(400, "BadRequest", f"invalid port {value!r}")
        ports.append(int(value))
    return tuple(ports)


class StreamHandlers:
    def __init__(self, *, pods: PodFinder, runtime: Callable[[str], Awaitable[PodRuntime]],
                 streaming: StreamingRuntime) -> None:
        self._pods = pods
        self._runtime = runtime
        self._streaming = streaming

    def register(self, router: web.UrlDispatcher) -> None:
        for verb in ("exec", "attach"):
            handler = self.exec if verb == "exec" else self.attach
            for path in (f"/{verb}/{{namespace}}/{{pod}}/{{container}}",
                         f"/{verb}/{{namespace}}/{{pod}}/{{uid}}/{{container}}"):
                router.add_get(path, handler, allow_head=False)
                router.add_post(path, handler)
        for path in ("/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"):
            router.add_get(path, self.port_forward, allow_head=False)
            router.add_post(path, self.port_forward)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._exec_url)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._attach_url)

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._port_forward_url)

    async def _serve(self, request: web.Request,
                     url_for: Callable[[web.Request, PodRuntime], Awaitable[str]]
                     ) -> web.StreamResponse:
        try:
            runtime = await self._pod_runtime(request)
            url = await url_for(request, runtime)
            return await proxy_upgrade(request, url)
        except StreamRequestError as exc:
            return _status(exc.code, exc.reason, str(exc))
        except StreamProxyError as exc:
            return _status(400, "BadRequest", str(exc))
        except (KubeletError, OSError) as exc:
            log.warning("%s %s: %s", request.method, request.path, exc)
            return _status(500, "InternalError", str(exc))

    async def _pod_runtime(self, request: web.Request) -> PodRuntime:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self._pods.find(ns, name)
        uid = request.match_info.get("uid")
        if pod is None or (uid and pod["metadata"]["uid"] != uid):
            raise StreamRequestError(404, "NotFound",
                                     f'pod "{name}" in namespace "{ns}" not found')
        return await self._runtime(pod["metadata"]["uid"])

    @staticmethod
    def _running(request: web.Request, runtime: PodRuntime) -> str:
        name = request.match_info["container"]
        container = runtime.latest(name)
        if container is None:
            raise StreamRequestError(404, "NotFound", f'container "{name}" not found in pod '
                                     f'"{request.match_info["pod"]}"')
        if container.state != State.RUNNING:
            raise StreamRequestError(400, "BadRequest",
                                     f'container "{name}" is not running '
                                     f"(state {container.state.value})")
        return container.id

    async def _exec_url(self, request: web.Request, runtime: PodRuntime) -> str:
        opts = stream_options(request.query, exec_=True)
        return await self._streaming.exec(
            self._running(request, runtime), opts.command, tty=opts.tty, stdin=opts.stdin,
            stdout=opts.stdout, stderr=opts.stderr)

    async def _attach_url(self, request: web.Request, runtime: PodRuntime) -> str:
        opts = stream_options(request.query, exec_=False)
        return await self._streaming.attach(
            self._running(request, runtime), tty=opts.tty, stdin=opts.stdin,
            stdout=opts.stdout, stderr=opts.stderr)

    async def _port_forward_url(self, request: web.Request, runtime: PodRuntime) -> str:
        sandbox = runtime.sandbox
        if sandbox is None or not sandbox.ready:
            raise StreamRequestError(400, "BadRequest", f'pod "{request.match_info["pod"]}" '
                                     "has no ready sandbox")
        return await self._streaming.port_forward(sandbox.id, forward_ports(request.query))


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.json_response(body, status=code)
