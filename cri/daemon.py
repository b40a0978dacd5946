"""`engined`: the engine daemon, serving the CRI (runtime.v1) on a unix socket.

This is the composition root: it builds the engine parts from its configuration and hands
them to the CRI server as ports. It lives in `cri` because the engine must not know the CRI
exists. Parts not wired into this build answer UNIMPLEMENTED and are reported as such in
`Status`; nothing is faked.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import grpc

from cri.daemon_options import DaemonOptions, build_parser, options_from_args
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
from engine.errors import EngineError
from engine.images import ImageService
from engine.networkdriver.cni import CNIDriver
from engine.registry.hosts import load_hosts
from engine.runtime.api import Runtime
from engine.runtime.context import HANDLERS, RuntimeOptions

log = logging.getLogger("engined")

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
    runtime = Runtime(RuntimeOptions(run_root=run_root, default_handler=options.exec_driver,
                                     pods_per_monitor=options.pods_per_monitor),
                      network=network)
    engine.closers.append(runtime.close)
    bus = EventBus()
    view = container_view(runtime, images)
    publisher = EnginePublisher(bus, runtime, view=view)
    publisher.start()
    engine.closers.append(publisher.stop)
    streaming = StreamingServer(EngineStreams(runtime))
    streaming.start()
    engine.closers.append(streaming.stop)
    engine.ports = dataclasses.replace(
        engine.ports, images=EngineImages(images), network=network,
        sandboxes=EngineSandboxes(runtime, images, publish=publisher.publish),
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
                       extra_handlers=engine.extensions, grpc_server=options.grpc_server)
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
