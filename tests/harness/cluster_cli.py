"""`python -m tests.harness.cluster up|down|status`: what `make cluster` and its twins run."""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.harness.cluster import ControlPlane, down, status, up
from tests.harness.cluster_config import PORT_NAMES, ClusterError
from tests.harness.prereq import REPO, tools_bin


def _port_overrides(environ: Mapping[str, str]) -> dict[str, int]:
    overrides = {}
    for name in PORT_NAMES:
        raw = environ.get(f"CLUSTER_{name.upper()}_PORT")
        if raw:
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ClusterError(f"CLUSTER_{name.upper()}_PORT={raw!r} is not a port number")
            overrides[name] = int(raw)
    return overrides


def _tools() -> Path:
    if os.environ.get("TOOLS_BIN"):
        return Path(os.environ["TOOLS_BIN"])
    try:
        return tools_bin()
    except (subprocess.CalledProcessError, OSError, IndexError) as exc:
        raise ClusterError(f"cannot locate TOOLS_BIN ({exc}): run `make tools`") from None


def _print_env(cluster: ControlPlane) -> None:
    print(cluster.env.render(), end="")
    print(cluster.env.join_command())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.cluster",
                                     description="A local control plane on 127.0.0.1.")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path,
                        default=Path(os.environ.get("CLUSTER_DIR") or REPO / ".cluster"))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="cluster: %(message)s")
    root: Path = args.dir
    try:
        if args.command == "down":
            down(root)
            print(f"cluster in {root} stopped")
            return 0
        if args.command == "status":
            kind, env = status(root)
            print(f"cluster in {root}: {kind}")
            return 0 if env is not None else 1
        tools = _tools()
        cluster = up(root, tools=tools, ports=_port_overrides(os.environ))
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1
    if cluster.already_running:
        print(f"cluster in {cluster.env.cluster_dir} is already up and healthy")
    else:
        print(f"cluster up in {cluster.start_seconds:.1f} s; state in {cluster.env.cluster_dir}")
    _print_env(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
