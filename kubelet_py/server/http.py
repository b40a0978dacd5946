"""The kubelet's HTTPS server: /healthz, /pods, /containerLogs, /exec, /attach,
/portForward, /stats/summary and /metrics, behind authn + authz."""
from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from kubelet_py.clock import parse_time
from kubelet_py.errors import KubeletError
from kubelet_py.pods.model import Pod, PodRuntime, State
from kubelet_py.server.auth import User, WebhookAuth, request_attributes, user_from_peercert
from kubelet_py.server.logs import LogError, LogOptions, log_file, stream_log
from kubelet_py.server.metrics import CONTENT_TYPE, KubeletMetrics
from kubelet_py.server.stats import SummaryProvider
from kubelet_py.server.streams import StreamHandlers, StreamingRuntime

log = logging.getLogger(__name__)


class PodDirectory(Protocol):
    def pods(self) -> list[Pod]: ...

    def find(self, namespace: str, name: str) -> Pod | None: ...


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.json_response(body, status=code)


def log_options(query: Any) -> LogOptions:
    def number(key: str) -> int | None:
        value = query.get(key)
        if value is None or value == "":
            return None
        if not value.lstrip("-").isdigit():
            raise ValueError(f"{key}={value!r} is not a number")
        return int(value)

    since = None
    if query.get("sinceTime"):
        since = parse_time(query["sinceTime"])
    elif number("sinceSeconds") is not None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=number("sinceSeconds") or 0)
    return LogOptions(tail_lines=number("tailLines"), since=since,
                      timestamps=query.get("timestamps") in ("1", "true"),
                      follow=query.get("follow") in ("1", "true"),
                      limit_bytes=number("limitBytes"))


class KubeletServer:
    def __init__(self, *, pods: PodDirectory, runtime: Callable[[str], Awaitable[PodRuntime]],
                 auth: WebhookAuth | None, log_root: Path,
                 streaming: StreamingRuntime | None = None,
                 summary: SummaryProvider | None = None,
                 metrics: KubeletMetrics | None = None) -> None:
        self._pods = pods
        self._runtime = runtime
        self._auth = auth
        self._log_root = log_root
        self._summary = summary
        self._metrics = metrics
        self.app = web.Application(middlewares=[self._count, self._authn])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}",
                                self.container_logs)
        if summary is not None:
            self.app.router.add_get("/stats/summary", self.stats_summary)
        if metrics is not None:
            self.app.router.add_get("/metrics", self.metrics)
        if streaming is not None:
            StreamHandlers(pods=pods, runtime=runtime, streaming=streaming).register(
                self.app.router)
        self._runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None

    def reload_certificate(self, cert: Path, key: Path) -> None:
        """Serve a new certificate on every later connection (after a rotation)."""
        if self._ssl is not None:
            self._ssl.load_cert_chain(cert, key)
            log.info("kubelet API now serves %s", cert)

    async def _user(self, request: web.Request) -> User | None:
        transport = request.transport
        user = user_from_peercert(transport.get_extra_info("peercert") if transport else None)
        header = request.headers.get("Authorization", "")
        if user is None and header.startswith("Bearer ") and self._auth is not None:
            user = await self._auth.user_for_token(header[len("Bearer "):].strip())
        return user

    @web.middleware
    async def _count(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if self._metrics is not None:
            long_running = request.path.startswith(("/exec/", "/attach/", "/portForward/")) \
                or request.query.get("follow") in ("1", "true")
            self._metrics.observe_request(request.method, request.path,
                                          long_running=long_running)
        return await handler(request)

    @web.middleware
    async def _authn(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if self._auth is None:
            return await handler(request)
        user = await self._user(request)
        if user is None:
            return _status(401, "Unauthorized", "Unauthorized")
        verb, subresources = request_attributes(request.method, request.path)
        if not await self._auth.allowed(user, verb, subresources):
            return _status(403, "Forbidden", f"Forbidden (user={user.name}, verb={verb}, "
                           f"resource=nodes, subresource({'|'.join(subresources)}))")
        return await handler(request)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                "items": self._pods.pods()}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def stats_summary(self, request: web.Request) -> web.Response:
        assert self._summary is not None
        try:
            body = await self._summary.summary()
        except (KubeletError, OSError) as exc:
            log.warning("stats summary: %s", exc)
            return _status(500, "InternalError", f"failed to get stats summary: {exc}")
        if request.query.get("only_cpu_and_memory") in ("1", "true"):
            body = {"node": {k: v for k, v in body["node"].items()
                             if k in ("nodeName", "startTime", "cpu", "memory")},
                    "pods": [{k: v for k, v in p.items()
                              if k in ("podRef", "startTime", "cpu", "memory", "containers")}
                             for p in body["pods"]]}
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        try:
            text = await self._metrics.text()
        except (KubeletError, OSError) as exc:
            log.warning("metrics: %s", exc)
            return _status(500, "InternalError", f"failed to collect metrics: {exc}")
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        pod = self._pods.find(ns, name)
        if pod is None:
            return _status(404, "NotFound", f'pod "{name}" in namespace "{ns}" not found')
        try:
            options = log_options(request.query)
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        uid = pod["metadata"]["uid"]
        runtime = await self._runtime(uid)
        current = runtime.latest(container)
        if current is None:
            return _status(400, "BadRequest", f'container "{container}" in pod "{name}" is '
                           "waiting to start or does not exist")
        target = current
        if request.query.get("previous") in ("1", "true"):
            previous = runtime.previous(container)
            if previous is None:
                return _status(400, "BadRequest", f'previous terminated container '
                               f'"{container}" in pod "{name}" not found')
            target = previous
            options = LogOptions(tail_lines=options.tail_lines, since=options.since,
                                 timestamps=options.timestamps, follow=False,
                                 limit_bytes=options.limit_bytes)
        directory = self._log_root / f"{ns}_{name}_{uid}"

        async def running() -> bool:
            fresh = (await self._runtime(uid)).latest(container)
            return fresh is not None and fresh.id == target.id and \
                fresh.state == State.RUNNING

        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        chunks = stream_log(log_file(directory, container, target.attempt), options,
                            running=running)
        try:
            first = await anext(chunks, None)
        except LogError as exc:
            return _status(404, "NotFound", str(exc))
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(first)
                async for chunk in chunks:
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            log.debug("log stream of %s/%s/%s: client went away", ns, name, container)
        finally:
            await chunks.aclose()
        return response

    async def start(self, *, host: str, port: int, cert: Path, key: Path,
                    client_ca: bytes | None) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            ctx.load_verify_locations(cadata=client_ca.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self._ssl = ctx
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=ctx).start()
        log.info("kubelet API serving on https://%s:%d", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
