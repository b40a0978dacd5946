"""An in-process OCI distribution registry for tests, with auth modes and fault injection,
plus helpers that build layers and images."""
from __future__ import annotations

import base64
import collections
import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes | str | None], *, mode: int = 0o644) -> bytes:
    """A tar: bytes -> regular file, str -> symlink target, None -> directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif isinstance(data, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), mode
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def compress(tar: bytes, kind: str) -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(tar, 1), LAYER_GZIP
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(tar), LAYER_ZSTD
    return tar, LAYER_TAR


@dataclasses.dataclass
class Built:
    manifest: bytes
    config: bytes
    blobs: dict[str, bytes]
    layer_digests: list[str]

    @property
    def digest(self) -> str:
        return sha(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha(self.config)


def build_image(layers: list[bytes], *, compression: str = "gzip", arch: str = "amd64",
                cmd: tuple[str, ...] = ("/bin/sh",), diff_ids: list[str] | None = None) -> Built:
    blobs: dict[str, bytes] = {}
    descs = []
    for tar in layers:
        data, media = compress(tar, compression)
        blobs[sha(data)] = data
        descs.append({"mediaType": media, "digest": sha(data), "size": len(data)})
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "User": "0"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(t) for t in layers]},
    }).encode()
    blobs[sha(config)] = config
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": descs}).encode()
    return Built(manifest, config, blobs, [d["digest"] for d in descs])


def index_of(entries: list[tuple[Built, dict[str, str]]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": b.digest, "size": len(b.manifest),
         "platform": plat} for b, plat in entries]}).encode()


class FakeRegistry:
    def __init__(self, *, auth: str | None = None, user: str = "u", password: str = "p") -> None:
        self.auth = auth  # None | basic | bearer | nochallenge
        self.user, self.password = user, password
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = collections.defaultdict(list)
        self.hits: collections.Counter[str] = collections.Counter()
        self.tokens_issued = 0
        self.token_requests: list[str] = []
        self.delay_blobs = 0.0
        self.redirect_blobs_to: str | None = None  # host:port of another FakeRegistry
        self.cdn_auth_headers: list[str | None] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeRegistry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def push(self, repo: str, tag: str, built: Built) -> None:
        self.blobs.update(built.blobs)
        for name in (tag, built.digest):
            self.manifests[(repo, name)] = (built.manifest, OCI_MANIFEST)

    def push_index(self, repo: str, tag: str, index: bytes, images: list[Built]) -> None:
        for b in images:
            self.push(repo, b.digest, b)
        for name in (tag, sha(index)):
            self.manifests[(repo, name)] = (index, OCI_INDEX)

    def fault(self, path_fragment: str, *actions: str) -> None:
        self.faults[path_fragment].extend(actions)

    def _take_fault(self, path: str) -> str | None:
        for frag, actions in self.faults.items():
            if frag in path and actions:
                return actions.pop(0)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                got = self.headers.get("Authorization", "")
                basic = "Basic " + base64.b64encode(
                    f"{reg.user}:{reg.password}".encode()).decode()
                if reg.auth is None:
                    return True
                if reg.auth == "basic":
                    if got == basic:
                        return True
                    self._send(401, b"{}", {"WWW-Authenticate": 'Basic realm="fake"'})
                    return False
                if reg.auth == "bearer":
                    if got == "Bearer good-token":
                        return True
                    realm = f"http://{reg.host}/token"
                    self._send(401, b"{}", {"WWW-Authenticate":
                               f'Bearer realm="{realm}",service="fake",'
                               f'scope="repository:{self._repo()}:pull"'})
                    return False
                self._send(401, b'{"errors":[]}')  # nochallenge
                return False

            def _repo(self) -> str:
                m = re.match(r"^/v2/(.+)/(manifests|blobs)/", self.path)
                return m.group(1) if m else ""

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                reg.token_requests.append(f"POST {sorted(form.items())}")
                if form.get("grant_type") == "refresh_token" and \
                        form.get("refresh_token") == "refresh-me":
                    reg.tokens_issued += 1
                    self._send(200, json.dumps({"access_token": "good-token"}).encode())
                    return
                self._send(401, b'{"error":"invalid_grant"}')

            def do_GET(self) -> None:
                reg.hits[self.path] += 1
                if self.path.startswith("/cdn/"):
                    reg.cdn_auth_headers.append(self.headers.get("Authorization"))
                    data = reg.blobs.get(self.path.removeprefix("/cdn/"))
                    self._send(200 if data else 404, data or b"")
                    return
                if self.path.startswith("/token"):
                    reg.token_requests.append(self.path)
                    basic = "Basic " + base64.b64encode(
                        f"{reg.user}:{reg.password}".encode()).decode()
                    if self.headers.get("Authorization") != basic:
                        self._send(401, b'{"details":"bad creds"}')
                        return
                    reg.tokens_issued += 1
                    self._send(200, json.dumps({"token": "good-token"}).encode())
                    return
                fault = reg._take_fault(self.path)
                if fault == "500":
                    self._send(500, b"oops")
                    return
                if fault == "403":
                    self._send(403, b'{"errors":[{"code":"DENIED"}]}')
                    return
                if not self._authorized():
                    return
                m = re.match(r"^/v2/(.+)/(manifests|blobs)/([^/?]+)$", self.path)
                if not m:
                    self._send(200 if self.path == "/v2/" else 404, b"{}")
                    return
                repo, kind, obj = m.groups()
                if kind == "manifests":
                    found = reg.manifests.get((repo, obj))
                    if not found:
                        self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                        return
                    body, ctype = found
                    self._send(200, body, {"Content-Type": ctype,
                                           "Docker-Content-Digest": sha(body)})
                    return
                if reg.redirect_blobs_to:
                    self._send(307, b"", {"Location":
                                          f"http://{reg.redirect_blobs_to}/cdn/{obj}"})
                    return
                data = reg.blobs.get(obj)
                if data is None:
                    self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                    return
                if reg.delay_blobs:
                    import time
                    time.sleep(reg.delay_blobs)
                if fault == "truncate":
                    self._send(200, data[: len(data) // 2], length=len(data))
                    self.close_connection = True
                    return
                if fault == "corrupt":
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self._send(200, data, {"Content-Type": "application/octet-stream"})

        return H


def running(**kw: Any) -> Iterator[FakeRegistry]:
    reg = FakeRegistry(**kw).start()
    try:
        yield reg
    finally:
        reg.stop()
