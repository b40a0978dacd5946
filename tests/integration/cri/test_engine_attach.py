"""CRI attach over the real engine: EngineStreams.attach against a running container whose
stdio the pod monitor owns (what critest's attach spec and `crictl attach` do, minus the
wire, which tests/e2e/test_crictl_streaming.py covers)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cri.api import runtime_pb2 as pb
from cri.server.engine_streams import EngineStreams
from cri.streaming.session import SessionIO
from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import Status
from tests.integration.runtime.fixtures import DRIVERS, rootfs, runtime, runtime_env, sandbox_config

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]  # fixtures


@pytest.mark.parametrize("handler", DRIVERS)
def test_attach_to_a_shell_feeds_stdin_and_returns_its_exit(runtime: Runtime, rootfs: Path,
                                                            handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="sh", command=("/bin/sh",), stdin=True, stdin_once=True)
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    out: list[bytes] = []
    err: list[bytes] = []

    async def w_out(data: bytes) -> None:
        out.append(data)

    async def w_err(data: bytes) -> None:
        err.append(data)

    async def attach() -> int:
        io = SessionIO(stdout=w_out, stderr=w_err, stdin=True, tty=False)
        task = asyncio.create_task(EngineStreams(runtime).attach(
            pb.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True), io))
        io.feed_stdin(b"echo hello; echo oops >&2\n")
        while b"".join(out) != b"hello\n":
            assert not task.done(), (out, err)
            await asyncio.sleep(0.05)
        io.feed_stdin(b"exit 3\n")
        io.close_stdin()  # stdin_once: the shell's stdin ends with ours
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(asyncio.wait_for(attach(), 60)) == 3
    assert b"".join(err) == b"oops\n"
    assert runtime.container_status(cid).state.status is Status.EXITED
