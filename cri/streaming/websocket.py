"""WebSocket framing (RFC 6455) and the Kubernetes channel protocols carried over it.

`v4.channel.k8s.io` and `v5.channel.k8s.io` send each stream in binary messages whose first
byte names the channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a Status JSON), 4 resize
(`{"Width":w,"Height":h}`). v5 adds channel 255: a message `[255, ch]` closes channel `ch`
(how a client half-closes stdin). The `base64.` variants send text messages whose first
character is the channel digit and whose rest is base64.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import struct

from engine.errors import InvalidArgument

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
DATA_OPS = (OP_CONTINUATION, OP_TEXT, OP_BINARY)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_CHANNEL = 255

MAX_PAYLOAD = 1 << 20


def accept_key(client_key: str) -> str:
    """The Sec-WebSocket-Accept answer to a Sec-WebSocket-Key."""
    digest = hashlib.sha1((client_key + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


@dataclasses.dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True


def encode(frame: Frame, *, mask: bytes | None = None) -> bytes:
    """One frame; `mask` (4 bytes) only for frames a client sends."""
    head = bytes([(0x80 if frame.fin else 0) | frame.opcode])
    n = len(frame.payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + frame.payload
    if len(mask) != 4:
        raise ValueError("a WebSocket mask is 4 bytes")
    return head + mask + _unmask(frame.payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    repeated = (mask * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big")


class FrameReader:
    """Incremental decoder. `require_mask` is True on the server side (clients must mask)."""

    def __init__(self, *, require_mask: bool, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._require_mask = require_mask
        self._max = max_payload

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> Frame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise InvalidArgument("WebSocket frame uses reserved bits without an extension")
        opcode, fin, masked, n = b0 & 0x0F, bool(b0 & 0x80), bool(b1 & 0x80), b1 & 0x7F
        if opcode not in CONTROL_OPS + DATA_OPS:
            raise InvalidArgument(f"unknown WebSocket opcode {opcode:#x}")
        if masked != self._require_mask:
            raise InvalidArgument("client frames must be masked and server frames not")
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if opcode in CONTROL_OPS and (n > 125 or not fin):
            raise InvalidArgument("WebSocket control frames are short and unfragmented")
        if n > self._max:
            raise InvalidArgument(f"WebSocket frame of {n} bytes exceeds {self._max}")
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        return Frame(opcode, _unmask(payload, mask) if masked else payload, fin)


@dataclasses.dataclass(frozen=True)
class ChannelCodec:
    """Messages of one negotiated channel protocol (`v4.channel.k8s.io` and friends)."""

    protocol: str

    @property
    def is_base64(self) -> bool:
        return ".base64." in f".{self.protocol}"

    @property
    def can_close(self) -> bool:
        return self.protocol.startswith("v5.")

    def message(self, channel: int, data: bytes) -> Frame:
        if self.is_base64:
            return Frame(OP_TEXT, str(channel).encode() + base64.b64encode(data))
        return Frame(OP_BINARY, bytes([channel]) + data)

    def parse(self, frame: Frame) -> tuple[int, bytes]:
        """(channel, data) of one complete data message."""
        if not frame.payload:
            raise InvalidArgument("channel message without a channel byte")
        if self.is_base64:
            if frame.opcode != OP_TEXT:
                raise InvalidArgument(f"{self.protocol} messages are text")
            try:
                return int(chr(frame.payload[0])), base64.b64decode(frame.payload[1:],
                                                                    validate=True)
            except ValueError as exc:
                raise InvalidArgument(f"bad {self.protocol} message: {exc}") from exc
        if frame.opcode != OP_BINARY:
            raise InvalidArgument(f"{self.protocol} messages are binary")
        channel = frame.payload[0]
        if channel == CLOSE_CHANNEL and not self.can_close:
            raise InvalidArgument(f"{self.protocol} has no close channel")
        return channel, frame.payload[1:]

    def close_message(self, channel: int) -> Frame:
        if not self.can_close:
            raise InvalidArgument(f"{self.protocol} cannot close a channel")
        return Frame(OP_BINARY, bytes([CLOSE_CHANNEL, channel]))


def close_frame(code: int = 1000, reason: str = "") -> Frame:
    return Frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
