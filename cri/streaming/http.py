"""Just enough HTTP/1.1 to receive an upgrade request and answer it."""
from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse

from engine.errors import InvalidArgument

MAX_HEAD = 16 << 10
REASONS = {101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]  # lower-case names

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))

    def header_values(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def upgrade(self) -> str:
        """"websocket", "spdy/3.1" or "" (lower-case)."""
        connection = {t.strip().lower() for t in self.header("Connection").split(",")}
        if "upgrade" not in connection:
            return ""
        return self.header("Upgrade").strip().lower()


async def read_request(reader: asyncio.StreamReader) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise InvalidArgument(f"request head larger than {MAX_HEAD} bytes") from exc
    except asyncio.IncompleteReadError as exc:
        raise InvalidArgument("connection closed before the request head ended") from exc
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise InvalidArgument(f"bad request line {lines[0][:100]!r}")
    method, target, _ = parts
    url = urllib.parse.urlsplit(target)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise InvalidArgument(f"bad header line {line[:100]!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Request(method, url.path, urllib.parse.parse_qs(url.query), headers)


def response(status: int, headers: dict[str, str] | None = None, body: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    all_headers = dict(headers or {})
    if status != 101:
        all_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        all_headers["Content-Length"] = str(len(body.encode()))
        all_headers.setdefault("Connection", "close")
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
