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
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from cri.errors import status_for
from cri.server import enginesvc, listener
from cri.server.engine_events import EnginePublisher
from cri.server.engine_images import EngineImages
from cri.server.engine_runtime import EngineContainers, EngineSandboxes, container_view
from cri.server.engine_stats import EngineStats
from cri.server.engine_streams import EngineStreams
from cri.server.events import EventBus
from cri.server.ports import Ports
from cri.server.serve import CriServer
from cri.streaming.server import StreamingServer
from engine import __version__
from engine.config import DEFAULT_LISTEN, DEFAULT_ROOT, DEFAULT_RUN_ROOT, EngineConfig
from engine.errors import EngineError
from engine.images import ImageService
from engine.networkdriver.cni import DEFAULT_BIN_DIRS, DEFAULT_CONF_DIR, CNIDriver
from engine.registry.hosts import load_hosts
from engine.runtime.api import Runtime
from engine.runtime.context import HANDLERS, RuntimeOptions

log = logging.getLogger("engined")

EXEC_DRIVERS = tuple(sorted(HANDLERS))  # native, and runc/crun through an OCI bundle
GRAPH_DRIVERS = ("overlay", "vfs")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class DaemonOptions:
    engine: EngineConfig
    cni_conf_dir: Path = DEFAULT_CONF_DIR
    cni_bin_dirs: tuple[Path, ...] = DEFAULT_BIN_DIRS
    exec_driver: str = "native"
    graph_driver: str = "overlay"
    log_level: str = "info"
    shutdown_grace_s: float = 5.0
    registry_hosts: Path | None = None


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
    parser.add_argument("--config", type=Path,
                        help="engine configuration file (YAML; not read by this build yet)")
    parser.add_argument("--cni-conf-dir", type=Path, default=DEFAULT_CONF_DIR,
                        help=f"CNI network configurations (default {DEFAULT_CONF_DIR})")
    parser.add_argument("--cni-bin-dir", type=Path, action="append", dest="cni_bin_dirs",
                        help="CNI plugin executables; repeatable (default "
                             f"{', '.join(str(d) for d in DEFAULT_BIN_DIRS)})")
    parser.add_argument("--exec-driver", choices=EXEC_DRIVERS, default="native",
                        help="the default runtime handler (default native)")
    parser.add_argument("--graph-driver", choices=GRAPH_DRIVERS, default="overlay",
                        help="how image layers are stored (default overlay)")
    parser.add_argument("--registry-hosts", type=Path, metavar="FILE",
                        help="registry mirrors and TLS settings (YAML or JSON)")
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
    if ns.config is not None:  # accepted by the parser (a documented flag) but not read yet
        raise SystemExit("engined: --config is not supported by this build yet; "
                         "pass the settings as flags")
    return DaemonOptions(engine=config_from_args(ns), cni_conf_dir=ns.cni_conf_dir,
                         cni_bin_dirs=tuple(ns.cni_bin_dirs or DEFAULT_BIN_DIRS),
                         exec_driver=ns.exec_driver,
                         graph_driver=ns.graph_driver, log_level=ns.log_level,
                         shutdown_grace_s=ns.shutdown_grace, registry_hosts=ns.registry_hosts)


@dataclasses.dataclass
class Engine:
    """The engine parts this daemon built, and how to release them."""

    ports: Ports
    closers: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    extensions: list[grpc.GenericRpcHandler[Any, Any]] = dataclasses.field(
        default_factory=list)  # served beside runtime.v1 (enginectl's engine.v1)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("closing an engine part failed")


def build_engine(options: DaemonOptions) -> Engine:
    """The engine parts this build can wire; raises EngineError when a configured part
    cannot be used (a daemon without its image store would only pretend to work)."""
    engine = Engine(Ports(runtime_name="kubelet-py", runtime_version=__version__,
                          runtime_handlers=tuple(sorted(HANDLERS))))
    try:
        _wire(engine, options)
    except BaseException:
        engine.close()
        raise
    ports = engine.ports
    unwired = [f.name for f in dataclasses.fields(ports)
               if f.name not in ("runtime_name", "runtime_version", "runtime_handlers")
               and getattr(ports, f.name) is None]
    if unwired:
        log.warning("engine parts not wired in this build (their RPCs answer "
                    "UNIMPLEMENTED): %s", ", ".join(unwired))
    return engine


def _wire(engine: Engine, options: DaemonOptions) -> None:
    root, run_root = options.engine.root, options.engine.run_root
    images = ImageService(root / "images", driver=options.graph_driver,
                          hosts=load_hosts(options.registry_hosts))
    engine.closers.append(images.close)
    engine.extensions.append(enginesvc.handler(images, spool_dir=root / "enginectl-spool"))
    network = CNIDriver(conf_dir=options.cni_conf_dir, bin_dirs=options.cni_bin_dirs,
                        cache_dir=root / "cni")
    runtime = Runtime(RuntimeOptions(run_root=run_root, default_handler=options.exec_driver),
                      network=network)
    bus = EventBus()
    view = container_view(runtime, images)
    publisher = EnginePublisher(bus, runtime, images, view=view)
    publisher.start()
    engine.closers.append(publisher.stop)
    streaming = StreamingServer(EngineStreams(runtime))
    streaming.start()
    engine.closers.append(streaming.stop)
    engine.ports = dataclasses.replace(
        engine.ports, images=EngineImages(images), network=network,
        sandboxes=EngineSandboxes(runtime, images, view=view),
        containers=EngineContainers(runtime, images, view=view, publish=publisher.publish),
        streaming=streaming, stats=EngineStats(runtime, image_fs_mountpoint=str(images.root)),
        events=bus)


def serve(options: DaemonOptions, *, stop: threading.Event) -> int:
    """Serve until `stop` is set; 0 on a clean shutdown, 1 when it cannot start."""
    try:
        listener.prepare(listener.socket_path(options.engine.listen))  # before opening state
        engine = build_engine(options)
    except EngineError as exc:
        log.error("cannot start: %s", status_for(exc).message)
        return 1
    server = CriServer(listen=options.engine.listen, ports=engine.ports,
                       extra_handlers=engine.extensions)
    try:
        server.start()
    except EngineError as exc:
        log.error("cannot serve %s: %s", options.engine.listen, status_for(exc).message)
        engine.close()
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("shutting down (grace %.1fs)", options.shutdown_grace_s)
        server.stop(options.shutdown_grace_s)
        engine.close()
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
