"""A client of the CRI streaming server's WebSocket exec (`v5.channel.k8s.io`, `v4` too).

Each binary message starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final
Status JSON (which carries the exit code), 4 terminal resize; v5 adds 255 to close a
channel (we close stdin at its end of file).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import termios
import tty
from collections.abc import Iterator
from typing import BinaryIO

import aiohttp

from cri.ctl.errors import CtlError
from cri.streaming.exitstatus import parse_exit_code

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def resize_message(columns: int, lines: int) -> bytes:
    return bytes([RESIZE]) + json.dumps({"Width": columns, "Height": lines}).encode()


def exit_code_of(status: bytes) -> int:
    """The command's exit code from the Status JSON; CtlError when it could not run."""
    try:
        code = parse_exit_code(status)
    except (ValueError, KeyError, TypeError):
        raise CtlError(f"unreadable exec status: {status[:200]!r}") from None
    if code is None:
        message = json.loads(status).get("message", "exec failed")
        raise CtlError(f"exec failed: {message}")
    return code


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal at `fd` in raw mode for the duration (keys go to the container)."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _read(fd: int) -> bytes:
    """Read from a pipe or terminal when it is readable (never a thread left blocked in
    read() when the session ends); a regular file is simply read."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return os.read(fd, 1 << 16)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 1 << 16)


class _Session:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, out: BinaryIO,
                 err: BinaryIO) -> None:
        self.ws = ws
        self.out, self.err = out, err
        self.v5 = ws.protocol == PROTOCOLS[0]
        self.status: bytes | None = None

    async def pump_stdin(self, fd: int) -> None:
        while data := await _read(fd):
            await self.ws.send_bytes(bytes([STDIN]) + data)
        if self.v5:
            await self.ws.send_bytes(bytes([CLOSE, STDIN]))

    async def receive(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel in (STDOUT, STDERR):
                target = self.out if channel == STDOUT else self.err
                target.write(data)
                target.flush()
            elif channel == ERROR:
                self.status = (self.status or b"") + data


async def _exec(url: str, *, stdin_fd: int | None, tty_fd: int | None, out: BinaryIO,
                err: BinaryIO) -> int:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, protocols=PROTOCOLS, max_msg_size=0) as ws:
        session = _Session(ws, out=out, err=err)
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()
        if tty_fd is not None:
            def resize() -> None:
                size = shutil.get_terminal_size()
                task = loop.create_task(ws.send_bytes(resize_message(size.columns, size.lines)))
                pending.add(task)
                task.add_done_callback(pending.discard)
            resize()
            loop.add_signal_handler(signal.SIGWINCH, resize)
        feeder = loop.create_task(session.pump_stdin(stdin_fd)) if stdin_fd is not None \
            else None
        try:
            await session.receive()
        finally:
            if feeder is not None:
                feeder.cancel()
            if tty_fd is not None:
                loop.remove_signal_handler(signal.SIGWINCH)
    if session.status is None:
        raise CtlError("the exec stream ended without an exit status")
    return exit_code_of(session.status)


def run_exec(url: str, *, stdin: bool, tty_mode: bool, out: BinaryIO, err: BinaryIO) -> int:
    """Run the session behind `url`; returns the command's exit code."""
    stdin_fd = 0 if stdin else None
    tty_fd = 0 if tty_mode and os.isatty(0) else None
    try:
        if tty_fd is not None:
            with raw_terminal(tty_fd):
                return asyncio.run(_exec(url, stdin_fd=stdin_fd, tty_fd=tty_fd, out=out,
                                         err=err))
        return asyncio.run(_exec(url, stdin_fd=stdin_fd, tty_fd=None, out=out, err=err))
    except aiohttp.ClientError as exc:
        raise CtlError(f"exec stream at {url}: {exc}") from None
