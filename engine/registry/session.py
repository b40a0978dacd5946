"""One registry endpoint + repository: HTTP requests with auth, redirects and retries.

Why stdlib `http.client` with threads rather than aiohttp: the rest of the image path is
blocking by nature (SQLite metadata, file writes, the unpacker's syscalls) and the CRI server
calls us from gRPC worker threads. Threads keep one simple call stack per layer download;
zlib, hashlib and socket reads release the GIL, so downloads and unpacking still overlap.
An event loop would have to hand every one of those steps to a thread anyway.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

from engine.errors import InvalidArgument, NotFound, Unavailable
from engine.registry.auth import AuthConfig, parse_challenges
from engine.registry.errors import AccessDenied, AuthenticationError
from engine.registry.hosts import Endpoint

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}
USER_AGENT = "kubelet-py/0.1"


class Session:
    def __init__(self, endpoint: Endpoint, repository: str, auth: AuthConfig | None, *,
                 retries: int = 4, backoff: float = 0.2, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self.repository = repository
        self.auth = auth or AuthConfig()
        self.retries = retries
        self.backoff_base = backoff
        self.timeout = timeout
        self._sleep = sleep
        self._authz: str | None = None
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            ctx = ssl.create_default_context(cafile=endpoint.ca_file)
            if not endpoint.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def _send(self, method: str, url: str, headers: Mapping[str, str],
              body: bytes | None = None) -> http.client.HTTPResponse:
        """One request, following redirects (Authorization only to the same host)."""
        hdrs = dict(headers)
        for _ in range(6):
            u = urllib.parse.urlsplit(url)
            conn = self._connect(u.scheme, u.netloc)
            target = u.path + (f"?{u.query}" if u.query else "")
            conn.request(method, target, body=body, headers={"User-Agent": USER_AGENT, **hdrs})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                resp.read()
                conn.close()
                nxt = urllib.parse.urljoin(url, resp.getheader("Location", ""))
                if urllib.parse.urlsplit(nxt).netloc != u.netloc:
                    hdrs.pop("Authorization", None)
                url = nxt
                continue
            return resp
        raise Unavailable(f"too many redirects fetching {url}")

    def get(self, path: str, *, accept: str | None = None,
            method: str = "GET") -> http.client.HTTPResponse:
        """GET `path` under /v2/<repository>/, authenticating and retrying as needed.

        Returns an open 200 response; the caller reads and closes it."""
        url = f"{self.endpoint.base}/v2/{self.repository}/{path}"
        authed = False
        last = ""
        attempt = 0
        while attempt <= self.retries:
            headers = {"Accept": accept} if accept else {}
            if self._authz:
                headers["Authorization"] = self._authz
            try:
                resp = self._send(method, url, headers)
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                attempt = self.backoff(attempt, url, last)
                continue
            if resp.status == 200:
                return resp
            body = resp.read(4096)
            resp.close()
            if resp.status == 401:
                if authed:
                    raise AuthenticationError(
                        f"{self.endpoint.host}: credentials refused for {self.repository}")
                header = resp.getheader("WWW-Authenticate")
                if not header:
                    raise AuthenticationError(
                        f"{self.endpoint.host} answered 401 Unauthorized for {self.repository} "
                        "without a WWW-Authenticate challenge")
                self._authenticate(header)
                authed = True
                continue
            if resp.status in RETRY_STATUS:
                last = f"HTTP {resp.status}"
                attempt = self.backoff(attempt, url, last)
                continue
            if resp.status == 404:
                raise NotFound(f"{url}: not found")
            if resp.status == 403:
                raise AccessDenied(f"{url}: access denied (403): {_snippet(body)}")
            raise InvalidArgument(f"{url}: HTTP {resp.status}: {_snippet(body)}")
        raise Unavailable(f"{url}: giving up after {self.retries + 1} attempts ({last})")

    def backoff(self, attempt: int, url: str, why: str) -> int:
        if attempt < self.retries:
            delay = min(self.backoff_base * (2 ** attempt), 5.0)
            log.info("registry request failed, retrying", extra={"url": url, "why": why})
            self._sleep(delay)
        return attempt + 1

    def _authenticate(self, header: str) -> None:
        challenges = {c.scheme: c for c in parse_challenges(header)}
        with self._lock:
            if "bearer" in challenges:
                self._authz = "Bearer " + self._token(challenges["bearer"].params)
            elif "basic" in challenges:
                creds = self.auth.basic()
                if creds is None:
                    raise AuthenticationError(
                        f"{self.endpoint.host} requires basic auth and no credentials were given")
                self._authz = "Basic " + base64.b64encode(":".join(creds).encode()).decode()
            else:
                raise AuthenticationError(f"{self.endpoint.host}: unsupported challenge {header!r}")

    def _token(self, params: dict[str, str]) -> str:
        if self.auth.registry_token:
            return self.auth.registry_token
        realm = params.get("realm")
        if not realm or urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise AuthenticationError(f"{self.endpoint.host}: Bearer challenge without a realm")
        scope = params.get("scope") or f"repository:{self.repository}:pull"
        query = [("scope", s) for s in scope.split(" ")]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers: dict[str, str] = {}
        body: bytes | None = None
        method = "GET"
        if self.auth.identity_token:
            method = "POST"
            form = [("grant_type", "refresh_token"), ("refresh_token", self.auth.identity_token),
                    ("client_id", "kubelet-py"), *query]
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            creds = self.auth.basic()
            if creds:
                headers["Authorization"] = "Basic " + base64.b64encode(
                    ":".join(creds).encode()).decode()
        for attempt in range(self.retries + 1):
            try:
                resp = self._send(method, url, headers, body)
                data = resp.read(1 << 20)
                resp.close()
            except (OSError, http.client.HTTPException) as exc:
                self.backoff(attempt, url, str(exc))
                continue
            if resp.status in RETRY_STATUS:
                self.backoff(attempt, url, f"HTTP {resp.status}")
                continue
            if resp.status != 200:
                raise AuthenticationError(
                    f"token server {realm} refused: HTTP {resp.status}: {_snippet(data)}")
            try:
                doc = json.loads(data)
            except ValueError:
                raise AuthenticationError(f"token server {realm} sent no JSON") from None
            token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
            if not isinstance(token, str) or not token:
                raise AuthenticationError(f"token server {realm} sent no token")
            return token
        raise Unavailable(f"token server {realm} unreachable")


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()
