"""StopContainer sends the request's stop signal, else the image's STOPSIGNAL, else SIGTERM."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import Status
from tests.integration.runtime.fixtures import (
    DRIVERS,
    log_text,
    rootfs,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]  # fixtures

# Reports which signal arrived and exits with a code of its own (no SIGKILL needed).
SCRIPT = ("trap 'echo got-TERM; exit 11' TERM; trap 'echo got-QUIT; exit 12' QUIT; "
          "trap 'echo got-USR1; exit 13' USR1; echo ready; while true; do sleep 0.05; done")


@pytest.mark.parametrize(("handler", "requested", "image", "code", "word"), [
    ("native", "", "", 11, "got-TERM"),
    ("native", "", "SIGQUIT", 12, "got-QUIT"),
    ("native", "SIGUSR1", "QUIT", 13, "got-USR1"),
    *[(h, "", "3", 12, "got-QUIT") for h in DRIVERS if h != "native"],
])
def test_stop_sends_the_chosen_signal(runtime: Runtime, rootfs: Path, handler: str,
                                      requested: str, image: str, code: int, word: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sh", "-c", SCRIPT), stop_signal=requested)
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig(stop_signal=image))
    runtime.start_container(cid)
    deadline = time.monotonic() + 60
    while "ready" not in log_text(runtime, cid):  # the traps are set
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runtime.stop_container(cid, timeout=20)
    state = runtime.container_status(cid).state
    assert state.status is Status.EXITED and state.exit_code == code
    assert word in log_text(runtime, cid)


def test_an_unknown_stop_signal_is_refused_at_create(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    with pytest.raises(InvalidArgument, match="SIGNOPE"):
        runtime.create_container(sid, ContainerConfig(name="c", command=("/bin/true",)),
                                 rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig(stop_signal="SIGNOPE"))
    assert runtime.list_containers(sid) == []
