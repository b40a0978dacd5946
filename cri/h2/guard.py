"""What a client may make the server do without a call: the HTTP/2 flood defences.

Each rule bounds a frame that costs the server work (an answer, a cancelled call, a loop
turn) but carries no request. Breaking one is a connection error, ENHANCE_YOUR_CALM
(RFC 9113 section 7: the peer "might be generating excessive load"), with a short reason
as the GOAWAY debug data.

- PING: the keepalive enforcement of grpc-go and grpc core. A PING sooner than
  `ping_min_interval_s` after the previous one (`ping_idle_interval_s` while no stream is
  open) is a strike; more than `max_ping_strikes` strikes end the connection with the
  debug data "too_many_pings". Sending HEADERS or DATA clears the strikes, so pings that
  ride along with traffic (BDP probes, keepalive during a stream) never count.
- SETTINGS: a frame of more than `max_settings_entries` entries is refused at once (the
  nghttp2 limit, CVE-2020-11080); SETTINGS frames (each needs an ACK) come out of a token
  bucket refilled over time and topped up whenever we send HEADERS or DATA.
- RST_STREAM of a stream still open ("rapid reset", CVE-2023-44487): a token bucket, the
  figures nghttp2 chose (a burst of 1000, 33 a second).
- Empty DATA / HEADERS / CONTINUATION frames that neither end the stream nor the header
  block: at most `max_empty_frames` in a row (Envoy's
  max_consecutive_inbound_frames_with_empty_payload, default 1).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from cri.h2.frames import ConnectionFailure, ErrorCode


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one connection may do; the defaults are the upstream ones named above, but for
    the SETTINGS bucket (no upstream figure: 16 at once, one a second, is far beyond what
    a client's BDP window updates send, and they come with our DATA, which refills it)."""

    ping_min_interval_s: float = 300.0  # grpc-go EnforcementPolicy.MinTime, grpc core alike
    ping_idle_interval_s: float = 7200.0  # no open stream: grpc-go's 2 hours
    max_ping_strikes: int = 2
    max_settings_entries: int = 32
    settings_burst: int = 16
    settings_per_s: float = 1.0
    reset_burst: int = 1000
    reset_per_s: float = 33.0
    max_empty_frames: int = 1
    # SETTINGS_MAX_HEADER_LIST_SIZE: what grpcio's server advertises (grpc core's hard
    # metadata limit; it also refuses some lists over its 8 KiB soft limit, at random),
    # so both servers engined can run advertise the same and refuse what is beyond it
    max_header_list: int = 16 << 10


DEFAULT_LIMITS = Limits()


class TokenBucket:
    def __init__(self, burst: int, per_s: float, now: float) -> None:
        self.burst = burst
        self.per_s = per_s
        self.tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """One token, if there is one."""
        self.tokens = min(float(self.burst), self.tokens + (now - self._at) * self.per_s)
        self._at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def fill(self) -> None:
        self.tokens = float(self.burst)


class Guard:
    """The rules of one connection; each check raises ConnectionFailure when broken."""

    def __init__(self, limits: Limits, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.limits = limits
        self._now = monotonic
        now = monotonic()
        self._last_ping: float | None = None
        self._strikes = 0
        self._answered = False  # we sent HEADERS or DATA since the last PING
        self._settings = TokenBucket(limits.settings_burst, limits.settings_per_s, now)
        self._resets = TokenBucket(limits.reset_burst, limits.reset_per_s, now)
        self._empty = 0

    def sent(self) -> None:
        """We sent HEADERS or DATA: the client's pings and settings are in step with it."""
        self._answered = True
        self._settings.fill()

    def ping(self, *, streams_open: bool) -> None:
        now = self._now()
        last, self._last_ping = self._last_ping, now
        if self._answered:
            self._answered = False
            self._strikes = 0
            return
        interval = self.limits.ping_min_interval_s if streams_open \
            else self.limits.ping_idle_interval_s
        if last is not None and now - last < interval:
            self._strikes += 1
            if self._strikes > self.limits.max_ping_strikes:
                raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "too_many_pings")

    def settings(self, entries: int) -> None:
        if entries > self.limits.max_settings_entries:
            raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "too_many_settings_entries")
        if not self._settings.take(self._now()):
            raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "too_many_settings")

    def reset(self) -> None:
        """The client reset a stream we had not finished."""
        if not self._resets.take(self._now()):
            raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "too_many_resets")

    def payload(self, size: int, *, ends: bool) -> None:
        """A DATA, HEADERS or CONTINUATION frame of `size` bytes; `ends` when it ends the
        stream or the header block (an empty one then still does something)."""
        if size or ends:
            self._empty = 0
            return
        self._empty += 1
        if self._empty > self.limits.max_empty_frames:
            raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "too_many_empty_frames")
