"""`engined`: the engine daemon, serving the CRI (runtime.v1) on a unix socket.

This is the composition root: it builds the engine from its configuration and hands it to
the CRI server. It lives in `cri` because the engine must not know the CRI exists.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import __version__
from engine.config import DEFAULT_LISTEN, DEFAULT_ROOT, DEFAULT_RUN_ROOT, EngineConfig


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
    return parser


def config_from_args(ns: argparse.Namespace) -> EngineConfig:
    if not str(ns.listen).startswith("unix://"):
        raise SystemExit(f"engined: --listen must be unix:///path, not {ns.listen!r}")
    return EngineConfig(root=ns.root, run_root=ns.run_root, listen=ns.listen,
                        config_file=ns.config)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    config = config_from_args(ns)
    sys.stderr.write(f"engined: the CRI server is not assembled yet in this build "
                     f"(would listen on {config.listen}).\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
