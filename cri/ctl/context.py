"""What a command runs with: the connection, its output streams and a clock."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

from cri.ctl.conn import Conn


@dataclasses.dataclass(frozen=True)
class Ctx:
    conn: Conn
    out: TextIO
    err: TextIO
    now_ns: Callable[[], int] = time.time_ns

    @property
    def out_bytes(self) -> BinaryIO:
        return self.out.buffer

    @property
    def err_bytes(self) -> BinaryIO:
        return self.err.buffer
