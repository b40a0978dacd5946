"""engined's settings: flags, an optional YAML `--config` file, and their defaults.

Precedence is the usual one for daemons (containerd, dockerd): a flag given on the command
line wins over the config file, which wins over the built-in default. The file's keys are
the flag names with underscores (`run_root`, `cni_bin_dirs`, ...); an unknown key or a value
of the wrong type is refused with the key's name, never ignored.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cri.server.serve import DEFAULT_GRPC_SERVER, GRPC_SERVERS
from engine import __version__
from engine.config import DEFAULT_LISTEN, DEFAULT_ROOT, DEFAULT_RUN_ROOT, EngineConfig
from engine.networkdriver.cni import DEFAULT_BIN_DIRS, DEFAULT_CONF_DIR
from engine.runtime.context import HANDLERS, PODS_PER_MONITOR

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
    pods_per_monitor: int = PODS_PER_MONITOR
    grpc_server: str = DEFAULT_GRPC_SERVER


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(value)
    return check


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a path")
    return Path(value)


def _paths(value: Any) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a path or a list of paths")
    return tuple(_path(v) for v in value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of seconds")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _listen(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("unix://"):
        raise ValueError(f"must be unix:///path, not {value!r}")
    return value


# Config-file key -> (converter, default). The keys are also the argparse dests.
SETTINGS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "root": (_path, DEFAULT_ROOT),
    "run_root": (_path, DEFAULT_RUN_ROOT),
    "listen": (_listen, DEFAULT_LISTEN),
    "cni_conf_dir": (_path, DEFAULT_CONF_DIR),
    "cni_bin_dirs": (_paths, DEFAULT_BIN_DIRS),
    "exec_driver": (_choice(EXEC_DRIVERS), "native"),
    "graph_driver": (_choice(GRAPH_DRIVERS), "overlay"),
    "registry_hosts": (_path, None),
    "log_level": (_choice(LOG_LEVELS), "info"),
    "shutdown_grace": (_number, 5.0),
    "pods_per_monitor": (_count, PODS_PER_MONITOR),
    "grpc_server": (_choice(GRPC_SERVERS), DEFAULT_GRPC_SERVER),
}


def build_parser() -> argparse.ArgumentParser:
    # Every setting defaults to SUPPRESS so that only flags really given override the file.
    parser = argparse.ArgumentParser(
        prog="engined", description="The kubelet-py container engine, serving the CRI.",
        argument_default=argparse.SUPPRESS)
    add = parser.add_argument
    add("--version", action="version", version=f"engined v{__version__}")
    add("--config", type=Path, default=None, metavar="FILE",
        help="YAML settings file: the keys below with underscores (run_root, cni_bin_dirs, "
             "...); flags win over it")
    add("--root", type=Path, help=f"persistent state (default {DEFAULT_ROOT})")
    add("--run-root", type=Path, help=f"runtime state (default {DEFAULT_RUN_ROOT})")
    add("--listen", help=f"CRI socket (default {DEFAULT_LISTEN})")
    add("--cni-conf-dir", type=Path,
        help=f"CNI network configurations (default {DEFAULT_CONF_DIR})")
    add("--cni-bin-dir", type=Path, action="append", dest="cni_bin_dirs",
        help="CNI plugin executables; repeatable (default "
             f"{', '.join(str(d) for d in DEFAULT_BIN_DIRS)})")
    add("--exec-driver", choices=EXEC_DRIVERS, help="the default runtime handler (default native)")
    add("--graph-driver", choices=GRAPH_DRIVERS,
        help="how image layers are stored (default overlay)")
    add("--registry-hosts", type=Path, metavar="FILE",
        help="registry mirrors and TLS settings (YAML or JSON)")
    add("--log-level", choices=LOG_LEVELS, help="default info")
    add("--shutdown-grace", type=float, metavar="SECONDS",
        help="time running RPCs get to finish on SIGTERM (default 5)")
    add("--pods-per-monitor", type=int, metavar="N",
        help="pods one monitor process serves at most: fewer processes and less memory per "
             f"pod, but a monitor crash takes up to N pods (default {PODS_PER_MONITOR})")
    add("--grpc-server", choices=GRPC_SERVERS,
        help="which gRPC server serves the CRI socket: kpy (ours, cri.h2: one event loop, "
             f"hot reads inline) or grpcio's (default {DEFAULT_GRPC_SERVER})")
    return parser


def read_config(path: Path) -> dict[str, Any]:
    """The settings of a config file, converted and checked; SystemExit names what is wrong."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SystemExit(f"engined: cannot read --config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SystemExit(f"engined: --config {path} is not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SystemExit(f"engined: --config {path} must be a mapping of settings")
    unknown = sorted(str(k) for k in doc if k not in SETTINGS)
    if unknown:
        raise SystemExit(f"engined: --config {path}: unknown setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(SETTINGS)}")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        try:
            out[key] = SETTINGS[key][0](value)
        except ValueError as exc:
            raise SystemExit(f"engined: --config {path}: {key} {exc}") from exc
    if "registry_hosts" in out and not out["registry_hosts"].is_absolute():
        out["registry_hosts"] = path.parent / out["registry_hosts"]
    return out


def options_from_args(ns: argparse.Namespace) -> DaemonOptions:
    given = {k: v for k, v in vars(ns).items() if k != "config"}
    settings = {k: default for k, (_, default) in SETTINGS.items()}
    if ns.config is not None:
        settings.update(read_config(ns.config))
    settings.update(given)
    try:
        _listen(settings["listen"])
    except ValueError:
        raise SystemExit(f"engined: --listen must be unix:///path, "
                         f"not {settings['listen']!r}") from None
    if settings["shutdown_grace"] < 0:
        raise SystemExit("engined: --shutdown-grace must not be negative")
    if settings["pods_per_monitor"] < 1:
        raise SystemExit("engined: --pods-per-monitor must be at least 1")
    engine = EngineConfig(root=settings["root"], run_root=settings["run_root"],
                          listen=settings["listen"], config_file=ns.config)
    return DaemonOptions(engine=engine, cni_conf_dir=settings["cni_conf_dir"],
                         cni_bin_dirs=tuple(settings["cni_bin_dirs"]),
                         exec_driver=settings["exec_driver"],
                         graph_driver=settings["graph_driver"],
                         log_level=settings["log_level"],
                         shutdown_grace_s=float(settings["shutdown_grace"]),
                         registry_hosts=settings["registry_hosts"],
                         pods_per_monitor=int(settings["pods_per_monitor"]),
                         grpc_server=settings["grpc_server"])
