"""Whether pod user namespaces work on this node: the kernel must make user namespaces and
ID-map the filesystems that hold container rootfs layers and run directories.

Checked for real, once per set of paths, in a small helper process (`python -S -m
engine.execdriver.userns_probe PATH...`, never a fork of the daemon): it makes a user
namespace with a mapping and ID-maps a detached clone of each path's mount (nothing is
attached, so nothing is left behind). Prints one JSON object: {"ok": bool, "reason": str}.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from engine.execdriver.helper import helper_env, python_argv
from engine.sys import idmap
from engine.sys import linux as L

PROBE_MAP = "0 65536 65536\n"  # any mapping will do; nothing is created with it


def _probe(paths: Sequence[str]) -> tuple[bool, str]:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            L.unshare(L.CLONE_NEWUSER)
            os.write(w, b"U")
            os.close(w)
            signal.pause()  # killed by the parent once it is done
        finally:
            os._exit(1)
    os.close(w)
    try:
        if os.read(r, 1) != b"U":
            return False, "cannot create a user namespace"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w") as f:
                f.write(PROBE_MAP)
        with idmap.open_userns(f"/proc/{child}/ns/user") as fd:
            for path in paths:
                ok, why = idmap.can_idmap(path, userns_fd=fd)
                if not ok:
                    return False, f"{path}: {why}"
        return True, ""
    except OSError as e:
        return False, str(e)
    finally:
        os.close(r)
        os.kill(child, 9)
        os.waitpid(child, 0)


@functools.cache
def supported(paths: tuple[str, ...]) -> tuple[bool, str]:
    """(works, why not) for ID-mapping every path in `paths`; cached per process."""
    try:
        done = subprocess.run(python_argv(__name__, *paths), capture_output=True, timeout=30,
                              env=helper_env(), cwd="/", check=False)
        answer = json.loads(done.stdout or b"{}")
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return False, f"user namespace probe failed: {e}"
    if not isinstance(answer, dict) or "ok" not in answer:
        return False, f"user namespace probe failed: {done.stderr.decode(errors='replace')}"
    return bool(answer["ok"]), str(answer.get("reason", ""))


def main(argv: list[str]) -> int:
    existing = [p for p in argv if os.path.exists(p)]
    ok, reason = _probe(existing) if existing else (False, "no path to probe")
    sys.stdout.write(json.dumps({"ok": ok, "reason": reason}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
