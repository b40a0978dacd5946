"""Certificate rotation: renew at a jittered 70-90% of the certificate's lifetime."""
from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable

from cryptography import x509

from kubelet_py.bootstrap.certstore import CertPair, CertStore
from kubelet_py.bootstrap.csr import CertRequest, request_certificate
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock
from kubelet_py.errors import KubeletError

log = logging.getLogger(__name__)


def rotation_deadline(cert: x509.Certificate, *, rng: random.Random) -> dt.datetime:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * rng.uniform(0.7, 0.9)


class Rotator:
    """Keeps one certificate pair fresh; calls `on_rotated` after writing a new pair."""

    def __init__(self, *, client: Callable[[], RestClient], store: CertStore,
                 request: CertRequest, clock: Clock,
                 on_rotated: Callable[[CertPair], Awaitable[None]] | None = None,
                 rng: random.Random | None = None, retry: float = 30.0) -> None:
        self._client = client
        self._store = store
        self._request = request
        self._clock = clock
        self._on_rotated = on_rotated
        self._rng = rng or random.Random()
        self._retry = retry
        self._deadlines: dict[int, dt.datetime] = {}

    def next_deadline(self) -> dt.datetime | None:
        """The rotation time of the current certificate (jittered once per certificate)."""
        pair = self._store.load()
        if pair is None:
            return None
        cert = pair.cert
        if cert.serial_number not in self._deadlines:
            self._deadlines[cert.serial_number] = rotation_deadline(cert, rng=self._rng)
        return self._deadlines[cert.serial_number]

    async def rotate_once(self) -> CertPair:
        issued = await request_certificate(self._client(), self._request)
        pair = CertPair(cert_pem=issued.cert_pem, key_pem=issued.key_pem)
        path = self._store.write(pair, now=self._clock.now())
        log.info("new %s certificate written to %s (expires %s)", self._store.prefix, path,
                 pair.cert.not_valid_after_utc.isoformat())
        if self._on_rotated is not None:
            await self._on_rotated(pair)
        return pair

    async def run(self) -> None:
        while True:
            deadline = self.next_deadline()
            if deadline is not None:
                wait = (deadline - self._clock.now()).total_seconds()
                if wait > 0:
                    log.info("%s certificate rotation at %s", self._store.prefix,
                             deadline.isoformat())
                    await self._clock.sleep(wait)
            try:
                await self.rotate_once()
            except KubeletError as exc:
                log.warning("%s certificate rotation failed: %s; retrying in %.0fs",
                            self._store.prefix, exc, self._retry)
                await self._clock.sleep(self._retry)
