"""Resolve references to manifests and fetch verified blobs, trying mirrors in order."""
from __future__ import annotations

import dataclasses
import http.client
import logging
import time
from collections.abc import Callable
from pathlib import Path

from engine.errors import EngineError, InvalidArgument, NotFound, Unavailable
from engine.graph import digest as dg
from engine.graph.content import Writer
from engine.graph.errors import DigestMismatch, SizeMismatch, TruncatedContent
from engine.registry import manifest as mf
from engine.registry.auth import AuthConfig, from_docker_config
from engine.registry.hosts import Hosts
from engine.registry.reference import Reference
from engine.registry.session import Session

log = logging.getLogger(__name__)
CHUNK = 1 << 20
Progress = Callable[[int], None]  # bytes just received


@dataclasses.dataclass(frozen=True)
class Document:
    digest: str
    media_type: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Resolved:
    ref: Reference  # as asked for (tag and/or digest)
    digest: str  # of the top document: the index if there was one, else the manifest
    manifest: Document
    parsed: mf.Manifest
    index: Document | None
    session: Session


class RegistryClient:
    def __init__(self, hosts: Hosts | None = None, *, docker_config: Path | None = None,
                 platform: mf.Platform | None = None, retries: int = 4, backoff: float = 0.2,
                 timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.hosts = hosts or Hosts()
        self.docker_config = docker_config
        self.platform = platform or mf.host_platform()
        self._opts = {"retries": retries, "backoff": backoff, "timeout": timeout}
        self._sleep = sleep

    def _auth(self, ref: Reference, auth: AuthConfig | None) -> AuthConfig | None:
        if auth is not None and not auth.empty():
            return auth
        if self.docker_config is not None:
            return from_docker_config(self.docker_config, ref.domain)
        return None

    def sessions(self, ref: Reference, auth: AuthConfig | None) -> list[Session]:
        creds = self._auth(ref, auth)
        return [Session(ep, ref.path, creds, retries=int(self._opts["retries"]),
                        backoff=self._opts["backoff"], timeout=self._opts["timeout"],
                        sleep=self._sleep)
                for ep in self.hosts.endpoints(ref.domain)]

    def resolve(self, ref: Reference, auth: AuthConfig | None = None) -> Resolved:
        """Find the image manifest for this platform, trying each endpoint (mirror) in turn."""
        errors: list[str] = []
        sessions = self.sessions(ref, auth)
        for i, session in enumerate(sessions):
            try:
                return self._resolve(ref, session)
            except (NotFound, Unavailable) as exc:
                if i == len(sessions) - 1:
                    if errors:
                        raise type(exc)(f"{exc} (mirrors: {'; '.join(errors)})") from None
                    raise
                errors.append(f"{session.endpoint.host}: {exc}")
                log.info("mirror failed, trying next", extra={"error": str(exc)})
        raise Unavailable(f"no endpoint for {ref.domain}")  # hosts always lists upstream

    def _resolve(self, ref: Reference, session: Session) -> Resolved:
        doc = self.fetch_manifest(session, ref.object, ref.digest)
        index: Document | None = None
        parsed = mf.parse(doc.data, doc.media_type)
        depth = 0
        while isinstance(parsed, mf.Index):
            depth += 1
            if depth > 3:
                raise InvalidArgument(f"{ref}: image indexes nested too deeply")
            chosen = mf.select(parsed, self.platform)
            index = index or doc
            doc = self.fetch_manifest(session, chosen.digest, chosen.digest, size=chosen.size)
            parsed = mf.parse(doc.data, doc.media_type)
            if parsed.media_type != chosen.media_type:
                raise InvalidArgument(
                    f"{ref}: the index lists {chosen.digest} as {chosen.media_type!r} "
                    f"but it is {parsed.media_type!r}")
        top = index or doc
        return Resolved(ref, top.digest, doc, parsed, index, session)

    def fetch_manifest(self, session: Session, obj: str, digest: str | None, *,
                       size: int | None = None) -> Document:
        resp = session.get(f"manifests/{obj}", accept=mf.ACCEPT)
        try:
            data = resp.read(mf.MAX_MANIFEST + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"reading manifest {obj}: {exc}") from None
        finally:
            resp.close()
        if len(data) > mf.MAX_MANIFEST:
            raise InvalidArgument(f"manifest {obj} is larger than {mf.MAX_MANIFEST} bytes")
        got = dg.of_bytes(data)
        if size is not None and len(data) != size:
            raise SizeMismatch(f"manifest {obj}: {len(data)} bytes, descriptor says {size}")
        if digest is not None and got != digest:
            raise DigestMismatch(f"manifest {obj}: content hashes to {got}")
        header = resp.getheader("Docker-Content-Digest")
        if digest is None and header and header.startswith("sha256:") and header != got:
            raise DigestMismatch(f"manifest {obj}: registry says {header}, content is {got}")
        return Document(got, resp.getheader("Content-Type", ""), data)

    def fetch_blob(self, session: Session, desc: mf.Descriptor,
                   new_writer: Callable[[], Writer], progress: Progress | None = None) -> None:
        """Download `desc` into a fresh writer and commit it; truncated streams are retried."""
        last: EngineError | None = None
        for attempt in range(session.retries + 1):
            if attempt:
                session.backoff(attempt - 1, desc.digest, str(last))
            writer = new_writer()
            try:
                resp = session.get(f"blobs/{desc.digest}")
                try:
                    while chunk := resp.read(CHUNK):
                        writer.write(chunk)
                        if progress:
                            progress(len(chunk))
                finally:
                    resp.close()
                writer.commit()
                return
            except (OSError, http.client.HTTPException) as exc:
                last = TruncatedContent(f"blob {desc.digest}: {type(exc).__name__}: {exc}")
            except TruncatedContent as exc:
                last = exc
            finally:
                writer.abort()
        assert last is not None
        raise last
