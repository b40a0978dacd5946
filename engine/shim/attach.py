"""Attach streams between the runtime and a monitor: after an {"op": "attach"} request is
answered, the connection carries frames `<kind:u8><length:u32 BE><data>`.

monitor -> client: STDOUT, STDERR (a TTY container's output is all STDOUT); EOF = the
container exited. client -> monitor: STDIN, RESIZE (payload: width, height as u16 BE),
CLOSE_STDIN.
"""
from __future__ import annotations

import struct

STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN = 0, 1, 2, 3, 4
STREAMS = {"stdout": STDOUT, "stderr": STDERR}
_HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 20


def frame(kind: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(data)) + data


def resize_payload(width: int, height: int) -> bytes:
    return struct.pack(">HH", width, height)


def parse_resize(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">HH", data)
    return width, height


class FrameReader:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf.extend(data)
        out = []
        while len(self._buf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"attach frame of {length} bytes")
            if len(self._buf) < _HEADER.size + length:
                break
            out.append((kind, bytes(self._buf[_HEADER.size:_HEADER.size + length])))
            del self._buf[:_HEADER.size + length]
        return out
