"""A CRI server over fake ports plus the EngineService over a fake image engine, and a
helper running `enginectl` in-process against it."""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.ctl.main import main
from cri.server import enginesvc
from cri.server.ports import Ports
from cri.server.serve import CriServer
from tests.unit.cri.conftest import full_ports
from tests.unit.ctl.fake_engine import FakeImageEngine


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


@dataclasses.dataclass
class Served:
    server: CriServer
    ports: Ports
    engine: FakeImageEngine
    spool: Path
    capsys: pytest.CaptureFixture[str]

    def ctl(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(["--endpoint", self.server.endpoint, *args])
        out, err = self.capsys.readouterr()
        return Result(code, out, err)


@pytest.fixture
def served(capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    with tempfile.TemporaryDirectory(prefix="ectl-", dir="/tmp") as d:
        engine = FakeImageEngine()
        spool = Path(d) / "spool"
        ports = full_ports()
        server = CriServer(listen=f"unix://{d}/e.sock", ports=ports, max_workers=8,
                           extra_handlers=[enginesvc.handler(engine, spool_dir=spool)])
        server.start()
        try:
            yield Served(server, ports, engine, spool, capsys)
        finally:
            server.stop(0)
