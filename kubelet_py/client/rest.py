"""An asyncio REST client for the API server speaking raw JSON.

The kubernetes package is synchronous and builds model objects; the kubelet's hot paths
(list/watch of pods, status patches, lease renewals) run on one event loop instead and keep
objects as plain dicts (`TypedDict`-style access at the boundary). One aiohttp session per
client; credentials can be swapped after a certificate rotation.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.client.kubeconfig import Credentials

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

Obj = dict[str, Any]


class RestClient:
    def __init__(self, credentials: Credentials, *, user_agent: str = "kubelet-py",
                 timeout: float = 30.0) -> None:
        self._credentials = credentials
        self._user_agent = user_agent
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def server(self) -> str:
        return self._credentials.server

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def update_credentials(self, credentials: Credentials) -> None:
        """Use new credentials for every later request (open watches keep the old ones)."""
        self._credentials = credentials
        old, self._session = self._session, None
        if old is not None:
            asyncio.get_running_loop().call_later(60.0, _close_soon, old)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context(), limit=64)
            headers = {"User-Agent": self._user_agent, "Accept": JSON,
                       **self._credentials.headers()}
            self._session = aiohttp.ClientSession(connector=connector, headers=headers,
                                                  read_bufsize=4 << 20)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = JSON,
                      timeout: float | None = None) -> Obj:
        session = self._open()
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with session.request(
                    method, self.server + path, params=params, data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout or self._timeout)) as resp:
                text = await resp.text()
                parsed = _parse(text)
                if resp.status >= 400:
                    raise ApiError.from_status(resp.status, parsed)
                return parsed if isinstance(parsed, dict) else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiUnavailable(f"{method} {path}: {exc!r}") from exc

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body=body)

    async def patch(self, path: str, body: Obj, *, content_type: str = MERGE_PATCH) -> Obj:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Obj]:
        """Yield the watch events of one watch request until the server ends it."""
        session = self._open()
        query = {**params, "watch": "true"}
        try:
            async with session.get(self.server + path, params=query,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=None,
                                                                 sock_connect=self._timeout)
                                   ) as resp:
                if resp.status >= 400:
                    raise ApiError.from_status(resp.status, _parse(await resp.text()))
                async for line in resp.content:
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
        except (aiohttp.ClientError, OSError) as exc:
            raise ApiUnavailable(f"watch {path}: {exc!r}") from exc


def _parse(text: str) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


_closing: set[asyncio.Task[None]] = set()


def _close_soon(session: aiohttp.ClientSession) -> None:
    task = asyncio.ensure_future(session.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
