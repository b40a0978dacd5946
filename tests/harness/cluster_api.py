"""A small HTTPS client for the control plane's endpoints (health, create-if-absent)."""
from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.cluster_config import ClusterError


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Endpoint:
    """https://127.0.0.1:<port>, verified against `ca`, as a client cert or a bearer token."""

    port: int
    ca: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    token: str | None = None
    timeout: float = 10.0

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None:
            ctx.load_cert_chain(str(self.client_cert),
                                str(self.client_key) if self.client_key else None)
        return ctx

    def request(self, method: str, path: str, body: Any = None) -> Response:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=self.timeout,
                                           context=self._context())
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def create(self, collection: str, obj: dict[str, Any]) -> None:
        """POST `obj`; an object that already exists (409) is fine: the harness is idempotent."""
        resp = self.request("POST", collection, obj)
        if resp.status not in (200, 201, 202, 409):
            name = obj.get("metadata", {}).get("name")
            raise ClusterError(f"creating {collection} {name} failed with HTTP {resp.status}: "
                               f"{resp.body[:300].decode(errors='replace')}")

    def healthy(self, path: str) -> bool:
        try:
            resp = self.get(path)
        except (OSError, http.client.HTTPException):
            return False
        return resp.status == 200 and resp.body.strip() == b"ok"


def wait_for(what: str, ready: Callable[[], bool], *, timeout: float,
             check: Callable[[], None] = lambda: None, interval: float = 0.2) -> float:
    """Poll `ready` until true; `check` raises if waiting is pointless (a process died).

    Returns the seconds waited; raises ClusterError after `timeout`.
    """
    start = time.monotonic()
    while True:
        check()
        if ready():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise ClusterError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)
