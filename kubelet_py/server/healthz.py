"""The plain-HTTP healthz endpoint on 127.0.0.1:--healthz-port (10248), as upstream."""
from __future__ import annotations

from aiohttp import web


class HealthzServer:
    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._ok)
        self._runner: web.AppRunner | None = None

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self, *, port: int, host: str = "127.0.0.1") -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
