"""`engined`: the engine daemon, serving the CRI (runtime.v1) on a unix socket.

This is the composition root: it builds the engine parts from its configuration and hands
them to the CRI server as ports. It lives in `cri` because the engine must not know the CRI
exists. Parts not wired into this build answer UNIMPLEMENTED and are reported as such in
`Status`; nothing is faked.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from cri.errors import status_for
from cri.server.ports import Ports
from cri.server.serve import CriServer
from engine import __version__
from engine.config import DEFAULT_LISTEN, DEFAULT_ROOT, DEFAULT_RUN_ROOT, EngineConfig
from engine.errors import EngineError

log = logging.getLogger("engined")

DEFAULT_CNI_CONF_DIR = Path("/etc/cni/net.d")
DEFAULT_CNI_BIN_DIR = Path("/opt/cni/bin")
EXEC_DRIVERS = ("native", "runc")
GRAPH_DRIVERS = ("overlay", "vfs")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class DaemonOptions:
    engine: EngineConfig
    cni_conf_dir: Path = DEFAULT_CNI_CONF_DIR
    cni_bin_dir: Path = DEFAULT_CNI_BIN_DIR
    exec_driver: str = "native"
    graph_driver: str = "overlay"
    log_level: str = "info"
    shutdown_grace_s: float = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engined", description="The kubelet-py container engine, serving the CRI.")
    parser.add_argument("--version", action="version", version=f"engined v{__version__}")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"persistent state (default {DEFAULT_ROOT})")
    parser.add_argument("--run-root", type=Path, default=DEFAULT_RUN_ROOT,
                        help=f"runtime state (default {DEFAULT_RUN_ROOT})")
    parser.add_argument("--listen", default=DEFAULT_LISTEN,
                        help=f"CRI socket (default {DEFAULT_LISTEN})")
    parser.add_argument("--config", type=Path, help="engine configuration file (YAML)")
    parser.add_argument("--cni-conf-dir", type=Path, default=DEFAULT_CNI_CONF_DIR,
                        help=f"CNI network configurations (default {DEFAULT_CNI_CONF_DIR})")
    parser.add_argument("--cni-bin-dir", type=Path, default=DEFAULT_CNI_BIN_DIR,
                        help=f"CNI plugin executables (default {DEFAULT_CNI_BIN_DIR})")
    parser.add_argument("--exec-driver", choices=EXEC_DRIVERS, default="native",
                        help="how containers are run (default native)")
    parser.add_argument("--graph-driver", choices=GRAPH_DRIVERS, default="overlay",
                        help="how image layers are stored (default overlay)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--shutdown-grace", type=float, default=5.0, metavar="SECONDS",
                        help="time running RPCs get to finish on SIGTERM (default 5)")
    return parser


def config_from_args(ns: argparse.Namespace) -> EngineConfig:
    if not str(ns.listen).startswith("unix://"):
        raise SystemExit(f"engined: --listen must be unix:///path, not {ns.listen!r}")
    return EngineConfig(root=ns.root, run_root=ns.run_root, listen=ns.listen,
                        config_file=ns.config)


def options_from_args(ns: argparse.Namespace) -> DaemonOptions:
    if ns.shutdown_grace < 0:
        raise SystemExit("engined: --shutdown-grace must not be negative")
    return DaemonOptions(engine=config_from_args(ns), cni_conf_dir=ns.cni_conf_dir,
                         cni_bin_dir=ns.cni_bin_dir, exec_driver=ns.exec_driver,
                         graph_driver=ns.graph_driver, log_level=ns.log_level,
                         shutdown_grace_s=ns.shutdown_grace)


def build_ports(options: DaemonOptions) -> Ports:
    """The engine parts this build can wire. Each lands here as its facade appears."""
    ports = Ports(runtime_name="kubelet-py", runtime_version=__version__)
    unwired = [f.name for f in dataclasses.fields(ports)
               if f.name not in ("runtime_name", "runtime_version")
               and getattr(ports, f.name) is None]
    if unwired:
        log.warning("engine parts not wired in this build (their RPCs answer "
                    "UNIMPLEMENTED): %s", ", ".join(unwired))
    return ports


def serve(options: DaemonOptions, *, stop: threading.Event) -> int:
    """Serve until `stop` is set; 0 on a clean shutdown, 1 when the socket is unusable."""
    server = CriServer(listen=options.engine.listen, ports=build_ports(options))
    try:
        server.start()
    except EngineError as exc:
        log.error("cannot serve %s: %s", options.engine.listen, status_for(exc).message)
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("shutting down (grace %.1fs)", options.shutdown_grace_s)
        server.stop(options.shutdown_grace_s)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    options = options_from_args(ns)
    logging.basicConfig(level=options.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return serve(options, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
