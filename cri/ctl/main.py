"""Entry point of `enginectl`."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.config import DEFAULT_LISTEN


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enginectl",
                                     description="Docker-like client of the kubelet-py engine.")
    parser.add_argument("--version", action="version", version=f"enginectl v{__version__}")
    parser.add_argument("--endpoint", default=DEFAULT_LISTEN,
                        help=f"engined socket (default {DEFAULT_LISTEN})")
    parser.add_subparsers(dest="command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
