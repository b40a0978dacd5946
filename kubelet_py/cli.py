"""`kubelet-py`: the node agent's command line."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kubelet_py import __version__
from kubelet_py.errors import KubeletError
from kubelet_py.options import add_kubelet_flags, options_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelet-py",
        description="A Kubernetes kubelet that runs the node's Pods through any CRI runtime.")
    parser.add_argument("--version", action="version", version=f"kubelet-py v{__version__}")
    add_kubelet_flags(parser)
    sub = parser.add_subparsers(dest="command")
    join = sub.add_parser("join", help="join a cluster with a bootstrap token, then run",
                          description="Join a cluster as `kubeadm join` does, then run.")
    join.add_argument("--server", required=True, help="https://HOST:PORT of the API server")
    join.add_argument("--token", required=True, help="bootstrap token ID.SECRET")
    join.add_argument("--discovery-token-ca-cert-hash", action="append", default=[],
                      help="sha256:<hex> pin of the cluster CA's public key")
    join.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true",
                      default=False, help="do not pin the CA (unsafe)")
    add_kubelet_flags(join, keep_parent=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        options = options_from_args(ns)
    except KubeletError as exc:
        sys.stderr.write(f"kubelet-py: {exc}\n")
        return 1
    from kubelet_py.app import run

    return run(options, ns)


if __name__ == "__main__":
    sys.exit(main())
