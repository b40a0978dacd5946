"""The load generator of the unary-RPC figures: h2load (nghttp2's HTTP/2 load tester, in C,
Debian's nghttp2-client), so the client does not eat the CPU the server needs.

A unary gRPC call is one HTTP/2 POST to /<service>/<method> with `content-type:
application/grpc` and `te: trailers`, whose body is one gRPC message: a 0 byte (not
compressed), the length as 4 big-endian bytes, the protobuf. We encode that request
once to a file and h2load sends it over and over. h2load cannot read gRPC's status (it is
in the trailers), so `check` sends the same protobuf through a gRPC client before and
after each pass: the server's state does not change during a pass, so every request of
it got the same answer (tests/unit/cri/test_h2load_request.py checks the encoding).

    result = run(socket=path, method="/runtime.v1.RuntimeService/ListContainers",
                 body=frame_file, clients=4, streams=1, seconds=5)
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import message as pb_message

H2LOAD = "h2load"
INSTALL = "apt-get install nghttp2-client"


def grpc_frame(request: pb_message.Message) -> bytes:
    """The body of a unary gRPC request carrying `request` (no compression)."""
    payload = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def binary() -> str:
    found = shutil.which(H2LOAD)
    if found is None:
        raise SystemExit(f"h2load is not installed ({INSTALL})")
    return found


@dataclasses.dataclass(frozen=True)
class Pass:
    """One h2load pass: what completed in the measured window."""

    requests: int  # done in the window
    succeeded: int  # HTTP 2xx
    failed: int  # failed + errored + timed out
    seconds: float
    latencies_ms: tuple[float, ...]  # each request of the window

    @property
    def rps(self) -> float:
        return self.succeeded / self.seconds


_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout")


def parse(stdout: str, log: str, *, seconds: float) -> Pass:
    """h2load's summary and its --log-file (start µs, HTTP status, µs to the response)."""
    m = _REQUESTS.search(stdout)
    if m is None:
        raise ValueError(f"no request counts in h2load's output:\n{stdout[-2000:]}")
    _, done, succeeded, failed, errored, timeout = (int(g) for g in m.groups())
    rows = [line.split("\t") for line in log.splitlines() if line.strip()]
    latencies = tuple(int(row[2]) / 1000.0 for row in rows if row[1].startswith("2"))
    return Pass(requests=done, succeeded=succeeded, failed=failed + errored + timeout,
                seconds=seconds, latencies_ms=latencies)


def run(*, socket: Path, method: str, body: Path, clients: int, streams: int,
        seconds: float, warmup_s: float = 1.0) -> Pass:
    """`clients` connections with `streams` requests in flight each, for `seconds` after
    `warmup_s` (whose requests are not counted)."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        done = subprocess.run(
            [binary(), f"--base-uri=unix:{socket}", "-c", str(clients), "-m", str(streams),
             "-t", "1", "-D", _duration(seconds), f"--warm-up-time={_duration(warmup_s)}",
             "--log-file", str(log), "-d", str(body),
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://localhost{method}"],
            capture_output=True, text=True, timeout=seconds + warmup_s + 60, check=False)
        if done.returncode != 0:
            raise SystemExit(f"h2load failed ({done.returncode}): {done.stderr[-2000:]}")
        return parse(done.stdout, log.read_text() if log.exists() else "", seconds=seconds)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


Verify = Callable[[bytes], str]  # the answer's bytes -> "" when right, else what is wrong


def check(endpoint: str, method: str, request: pb_message.Message, verify: Verify) -> None:
    """Send `request` through a gRPC client: it must get status OK and an answer `verify`
    accepts (so h2load's passes count answers, not errors)."""
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(method, request_serializer=None,  # bytes in and out
                                   response_deserializer=None)
        try:
            answer = call(request.SerializeToString(), timeout=30)
        except grpc.RpcError as err:
            code, details = err.code(), err.details()
            raise SystemExit(f"{method}: {code.name}: {details}") from err
    wrong = verify(answer)
    if wrong:
        raise SystemExit(f"{method}: wrong answer: {wrong}")
