"""HTTP/2 frames (RFC 9113, section 4 and 6): types, flags, error codes, settings, and
the bytes of the frames a server sends."""
from __future__ import annotations

import enum
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_LEN = 9
DEFAULT_WINDOW = 65_535
MAX_WINDOW = (1 << 31) - 1
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = (1 << 24) - 1


class FrameType(enum.IntEnum):
    """Frame types. The hot paths compare against the plain ints below (an enum operation
    costs a Python call)."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag:
    """Frame flags, as plain ints."""

    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ConnectionFailure(Exception):
    """A connection error (section 5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamError(Exception):
    """A stream error (section 5.4.2): RST_STREAM with `code`; the connection goes on."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.code = code


_HEAD = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream


def parse_header(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at data[pos:pos+9]."""
    high, low, ftype, flags, stream = _HEAD.unpack_from(data, pos)
    return (high << 8) | low, ftype, flags, stream & MAX_WINDOW


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


def head(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    """The 9-byte header of a frame whose payload is written after it."""
    return _HEAD.pack(length >> 8, length & 0xFF, ftype, flags, stream_id)


def settings(values: dict[Setting, int]) -> bytes:
    return frame(FrameType.SETTINGS, 0, 0,
                 b"".join(struct.pack(">HL", k, v) for k, v in values.items()))


SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
    return [struct.unpack_from(">HL", payload, i) for i in range(0, len(payload), 6)]


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def rst_stream(stream_id: int, code: ErrorCode) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">L", code))


def goaway(last_stream_id: int, code: ErrorCode, debug: bytes = b"") -> bytes:
    return frame(FrameType.GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, code) + debug)


def ping_ack(opaque: bytes) -> bytes:
    return frame(FrameType.PING, Flag.ACK, 0, opaque)


def headers(stream_id: int, block: bytes, *, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS, plus CONTINUATION frames when the block is bigger than `max_frame`."""
    end = Flag.END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, end | Flag.END_HEADERS, stream_id, block)
    parts = [block[i:i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, end, stream_id, parts[0])]
    for i, part in enumerate(parts[1:], start=2):
        out.append(frame(CONTINUATION, Flag.END_HEADERS if i == len(parts) else 0,
                         stream_id, part))
    return b"".join(out)


def strip_padding(stream_id: int, flags: int, payload: bytes) -> bytes:
    """The payload of a DATA or HEADERS frame without its PADDED padding."""
    if not flags & Flag.PADDED:
        return payload
    if not payload:
        raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "PADDED frame without pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR,
                               f"stream {stream_id}: padding longer than the frame")
    return payload[1:len(payload) - pad]
