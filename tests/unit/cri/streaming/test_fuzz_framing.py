"""Arbitrary bytes from the network: frames or InvalidArgument, never another exception."""
from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from cri.streaming import http, spdy
from cri.streaming import websocket as ws
from engine.errors import InvalidArgument


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_websocket_reader(chunks: list[bytes], require_mask: bool) -> None:
    reader = ws.FrameReader(require_mask=require_mask, max_payload=4096)
    try:
        for chunk in chunks:
            for frame in reader.feed(chunk):
                assert frame.opcode in ws.CONTROL_OPS + ws.DATA_OPS
    except InvalidArgument:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_spdy_reader(chunks: list[bytes]) -> None:
    reader = spdy.FrameReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except InvalidArgument:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_spdy_header_blocks(block: bytes) -> None:
    try:
        headers = spdy._parse_header_block(block)
    except InvalidArgument:
        return
    assert all(isinstance(v, list) for v in headers.values())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_http_request_head(data: bytes) -> None:
    async def parse() -> None:
        reader = asyncio.StreamReader(limit=http.MAX_HEAD)
        reader.feed_data(data + b"\r\n\r\n")
        reader.feed_eof()
        with contextlib.suppress(InvalidArgument):
            await http.read_request(reader)

    asyncio.run(parse())
