"""enginectl exec [-it] ID CMD...: run a command in a running container.

Without -i/-t it is the CRI's ExecSync (output shown when the command ends); with them,
the CRI Exec streaming URL over WebSocket, with a terminal when -t."""
from __future__ import annotations

import argparse

from cri.api import runtime_pb2 as pb
from cri.ctl import lookup
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError
from cri.ctl.wsexec import run_exec

HELP = "run a command in a running container"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("--timeout", type=int, default=0, metavar="SECONDS",
                   help="ExecSync timeout (default 0: none)")
    p.add_argument("container", metavar="ID")
    p.add_argument("cmd", metavar="CMD", nargs=argparse.REMAINDER)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    if not ns.cmd:
        raise CtlError("exec needs a command: enginectl exec [-it] ID CMD [ARG...]")
    if ns.timeout < 0:
        raise CtlError("--timeout must not be negative")
    found = lookup.container(ctx, ns.container)
    if not (ns.interactive or ns.tty):
        resp = ctx.conn.call(ctx.conn.runtime.ExecSync, pb.ExecSyncRequest(
            container_id=found.id, cmd=ns.cmd, timeout=ns.timeout), deadline=False)
        ctx.out_bytes.write(resp.stdout)
        ctx.out_bytes.flush()
        ctx.err_bytes.write(resp.stderr)
        ctx.err_bytes.flush()
        return int(resp.exit_code)
    url = ctx.conn.call(ctx.conn.runtime.Exec, pb.ExecRequest(
        container_id=found.id, cmd=ns.cmd, tty=ns.tty, stdin=ns.interactive, stdout=True,
        stderr=not ns.tty)).url
    return run_exec(url, stdin=ns.interactive, tty_mode=ns.tty, out=ctx.out_bytes,
                    err=ctx.err_bytes)
