"""A small client for the registry HTTP API v2 (the OCI distribution spec), stdlib only.

Pushes blobs (HEAD to skip what exists, optional cross-repository mount, else a monolithic
``POST /v2/<name>/blobs/uploads/`` then ``PUT <location>?digest=``), manifests by tag or
digest, and reads everything back. Basic auth and TLS with a private CA are supported.
"""
from __future__ import annotations

import base64
import http.client
import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.harness.oci_image import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Image,
    Index,
)
from tests.harness.oci_layer import Layer, sha256_digest

log = logging.getLogger(__name__)
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
BlobPush = Literal["exists", "mounted", "uploaded"]


class RegistryError(RuntimeError):
    """The registry answered something other than what the API prescribes."""

    def __init__(self, message: str, *, status: int = 0, headers: Mapping[str, str] | None = None,
                 body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.body = body


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class RegistryClient:
    """One keep-alive connection to one registry (`host` is ``host:port``)."""

    def __init__(self, host: str, *, tls: bool = False, ca_file: Path | None = None,
                 credentials: Credentials | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.tls = tls
        self.credentials = credentials
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if tls:
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._conn: http.client.HTTPConnection | None = None

    def clone(self) -> RegistryClient:
        """A client for the same registry on its own connection (one per thread)."""
        twin = RegistryClient(self.host, credentials=self.credentials, timeout=self._timeout)
        twin.tls, twin._context = self.tls, self._context
        return twin

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._context is not None:
                self._conn = http.client.HTTPSConnection(self.host, timeout=self._timeout,
                                                         context=self._context)
            else:
                self._conn = http.client.HTTPConnection(self.host, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, auth: bool = True) -> Response:
        sent = dict(headers or {})
        if auth and self.credentials is not None:
            sent["Authorization"] = self.credentials.header()
        if body is not None:
            sent["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=sent)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def _expect(self, resp: Response, ok: tuple[int, ...], what: str) -> Response:
        if resp.status not in ok:
            raise RegistryError(f"{what}: HTTP {resp.status} {resp.body[:300]!r}",
                                status=resp.status, headers=resp.headers, body=resp.body)
        return resp

    # --- reads -----------------------------------------------------------------------
    def ping(self, *, auth: bool = True) -> Response:
        return self.request("GET", "/v2/", auth=auth)

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if resp.status == 404:
            return False
        self._expect(resp, (200,), f"HEAD blob {repo}@{digest}")
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self._expect(self.request("GET", f"/v2/{repo}/blobs/{digest}"), (200,),
                            f"GET blob {repo}@{digest}")
        if sha256_digest(resp.body) != digest:
            raise RegistryError(f"blob {repo}@{digest} came back with another digest")
        return resp.body

    def get_manifest(self, repo: str, reference: str) -> Blob:
        resp = self._expect(self.request("GET", f"/v2/{repo}/manifests/{reference}",
                                         headers={"Accept": ", ".join(MANIFEST_TYPES)}),
                            (200,), f"GET manifest {repo}:{reference}")
        return Blob(resp.headers.get("content-type", ""), resp.body)

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}",
                            headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status == 404:
            return None
        self._expect(resp, (200,), f"HEAD manifest {repo}:{reference}")
        return resp.headers.get("docker-content-digest")

    # --- writes ----------------------------------------------------------------------
    def push_blob(self, repo: str, data: bytes, *, digest: str | None = None,
                  mount_from: str | None = None) -> BlobPush:
        """Make `repo` hold one blob: "exists" (nothing sent), "mounted" (cross-repository
        mount from `mount_from`) or "uploaded" (monolithic POST + PUT)."""
        digest = digest or sha256_digest(data)
        if self.blob_exists(repo, digest):
            return "exists"
        if mount_from:
            query = urllib.parse.urlencode({"mount": digest, "from": mount_from})
            resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}", body=b"")
            if resp.status == 201:
                return "mounted"
            # 202: the registry could not mount and opened an ordinary upload instead.
            self._expect(resp, (202,), f"mount {digest} into {repo}")
            self._delete_upload(resp)
        resp = self._expect(self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b""),
                            (202,), f"start upload to {repo}")
        target = self._location(resp)
        sep = "&" if "?" in target else "?"
        resp = self.request("PUT", f"{target}{sep}digest={urllib.parse.quote(digest)}",
                            body=data, headers={"Content-Type": "application/octet-stream"})
        self._expect(resp, (201,), f"PUT blob {digest} to {repo}")
        return "uploaded"

    def _location(self, resp: Response) -> str:
        location = resp.headers.get("location")
        if not location:
            raise RegistryError("upload started without a Location header", status=resp.status)
        parts = urllib.parse.urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _delete_upload(self, resp: Response) -> None:
        if resp.headers.get("location"):
            self.request("DELETE", self._location(resp))

    def put_manifest(self, repo: str, reference: str, manifest: Blob) -> str:
        resp = self._expect(self.request("PUT", f"/v2/{repo}/manifests/{reference}",
                                         body=manifest.data,
                                         headers={"Content-Type": manifest.media_type}),
                            (201,), f"PUT manifest {repo}:{reference}")
        got = resp.headers.get("docker-content-digest", manifest.digest)
        if got != manifest.digest:
            raise RegistryError(f"registry stored {repo}:{reference} as {got}, "
                                f"expected {manifest.digest}")
        return manifest.digest

    def push_image(self, repo: str, image: Image, *, tag: str | None = None) -> int:
        """Push layers, config and manifest (by digest, and by `tag` if given).
        Returns the number of blobs actually uploaded."""
        sent = 0
        for blob in image.blobs():
            data = blob.blob if isinstance(blob, Layer) else blob.data
            sent += self.push_blob(repo, data, digest=blob.digest) != "exists"
        self.put_manifest(repo, tag or image.manifest.digest, image.manifest)
        return sent

    def push(self, repo: str, tag: str, item: Image | Index) -> tuple[str, int]:
        """Push an image or an index (children first, by digest) under `tag`.
        Returns (manifest digest, blobs uploaded)."""
        if isinstance(item, Image):
            return item.manifest.digest, self.push_image(repo, item, tag=tag)
        sent = sum(self.push_image(repo, child) for child in item.images)
        self.put_manifest(repo, tag, item.blob)
        return item.blob.digest, sent
