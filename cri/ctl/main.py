"""Entry point of `enginectl`: one subcommand per cri/ctl/cmd_*.py module."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from cri.ctl import (
    cmd_exec,
    cmd_graph,
    cmd_images,
    cmd_inspect,
    cmd_load,
    cmd_logs,
    cmd_ps,
    cmd_pull,
    cmd_rm,
    cmd_rmi,
    cmd_run,
    cmd_save,
    cmd_stop,
)
from cri.ctl.conn import Conn, default_endpoint
from cri.ctl.context import Ctx
from cri.ctl.errors import EXIT_ENGINECTL, CtlError
from engine import __version__

COMMANDS: dict[str, ModuleType] = {
    "pull": cmd_pull, "images": cmd_images, "rmi": cmd_rmi, "load": cmd_load,
    "save": cmd_save, "inspect": cmd_inspect, "graph": cmd_graph, "ps": cmd_ps,
    "logs": cmd_logs, "exec": cmd_exec, "stop": cmd_stop, "rm": cmd_rm, "run": cmd_run,
}


class Parser(argparse.ArgumentParser):
    """Bad flags exit 125, as docker's do."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ENGINECTL, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="enginectl", description="Docker-like client of the kubelet-py engine.")
    parser.add_argument("--version", action="version", version=f"enginectl v{__version__}")
    parser.add_argument("--endpoint", default=default_endpoint(),
                        help="engined socket, unix:///path (default $ENGINECTL_ENDPOINT or "
                             "%(default)s)")
    parser.add_argument("--timeout", dest="rpc_timeout", type=float, default=60.0,
                        metavar="SECONDS",
                        help="deadline of each unary call (default 60)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.configure(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ENGINECTL
    try:
        conn = Conn(ns.endpoint, timeout_s=ns.rpc_timeout)
        try:
            code: int = COMMANDS[ns.command].run(ns, Ctx(conn=conn, out=sys.stdout,
                                                         err=sys.stderr))
        finally:
            conn.close()
    except CtlError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"enginectl: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
