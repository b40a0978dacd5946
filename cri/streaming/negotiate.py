"""Which stream protocol a streaming request gets, from what the client offers.

SPDY clients list versions in `X-Stream-Protocol-Version` headers; WebSocket clients in
`Sec-WebSocket-Protocol`. The server picks its most preferred version the client offers;
no overlap is an error (HTTP 403 Forbidden, as upstream answers).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.errors import InvalidArgument

# Remote command (exec, attach), newest first. Only the versions whose error channel carries
# a Status JSON (v4 and later) are offered, so exit codes always reach the client; over SPDY
# v5 behaves as v4 (its close channel exists only on WebSocket).
SPDY_REMOTECOMMAND = ("v5.channel.k8s.io", "v4.channel.k8s.io")
WEBSOCKET_REMOTECOMMAND = ("v5.channel.k8s.io", "v4.channel.k8s.io",
                           "v4.base64.channel.k8s.io")
SPDY_PORTFORWARD = ("portforward.k8s.io",)
# WebSocket port-forward: SPDY tunnelled in binary messages (what client-go speaks since
# v1.30), or the older channel-pair protocol.
SPDY_TUNNEL_PREFIX = "SPDY/3.1+"
WEBSOCKET_PORTFORWARD = (SPDY_TUNNEL_PREFIX + "portforward.k8s.io", "v4.channel.k8s.io",
                         "v4.base64.channel.k8s.io")

STREAM_PROTOCOL_HEADER = "X-Stream-Protocol-Version"


def offered(values: Iterable[str]) -> list[str]:
    """Header values may repeat and each may hold a comma-separated list."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def choose(server: Sequence[str], client: Iterable[str]) -> str:
    wanted = set(offered(client))
    for protocol in server:
        if protocol in wanted:
            return protocol
    raise InvalidArgument(f"no common stream protocol: client offers {sorted(wanted)}, "
                          f"server supports {list(server)}")
