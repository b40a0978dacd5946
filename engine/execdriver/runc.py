"""The runc exec driver: an OCI bundle handed to runc or crun (the binary is configurable)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import termios
from pathlib import Path

from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from engine.execdriver import console, mountopts
from engine.execdriver.base import Created, ExecProcess, Stdio
from engine.execdriver.codec import write_atomic
from engine.execdriver.oci import config
from engine.execdriver.spec import InitSpec

HYBRID = "/sys/fs/cgroup/unified"


def exec_pid_file(bundle: Path, helper_pid: int) -> Path:
    return bundle / f"exec-{helper_pid}.pid"


def exec_process_file(bundle: Path, helper_pid: int) -> Path:
    return bundle / f"exec-{helper_pid}.json"


class RuncDriver:
    name = "runc"

    def __init__(self, *, binary: str = "runc", state_root: Path) -> None:
        self.binary = binary
        self.state_root = state_root
        # crun (1.8) refuses hybrid cgroup hosts (v1 plus a unified tree with controllers):
        # it runs in a private mount namespace without the unified tree, i.e. on plain v1.
        self.hide_unified = os.path.basename(binary) == "crun" and os.path.ismount(HYBRID)

    def _global(self) -> list[str]:
        prefix: list[str] = []
        if self.hide_unified:
            prefix = ["unshare", "--mount", "--propagation", "slave", "sh", "-c",
                      f'umount -l {HYBRID} && exec "$@"', "crun"]
        return [*prefix, self.binary, "--root", str(self.state_root)]

    def _base(self, bundle: Path) -> list[str]:
        return [*self._global(), "--log", str(bundle / "runc.log"), "--log-format", "json"]

    def _last_error(self, bundle: Path, stderr: bytes) -> str:
        try:
            lines = (bundle / "runc.log").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("level") in {"error", "fatal"}:
                return str(entry.get("msg"))
        return stderr.decode(errors="replace").strip() or "no reason given"

    def _run(self, argv: list[str], *, bundle: Path, timeout: float,
             stdio: Stdio | None = None) -> None:
        try:
            if stdio is None:
                done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            else:
                # the container inherits these: runc's own errors go to --log
                done = subprocess.run(argv, stdin=stdio.stdin, stdout=stdio.stdout,
                                      stderr=stdio.stderr, timeout=timeout, check=False)
        except FileNotFoundError as e:
            raise Unavailable(f"{self.binary} is not installed") from e
        except subprocess.TimeoutExpired as e:
            raise DeadlineExceeded(f"{' '.join(argv[:1] + argv[-2:])} timed out") from e
        if done.returncode != 0:
            raise InvalidArgument(f"{self.binary} {argv[len(self._base(bundle))]}: "
                                  f"{self._last_error(bundle, done.stderr or b'')}")

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> Created:
        if self.hide_unified and mountopts.root_propagation(
                m.options for m in spec.mounts) == "rshared":
            raise FailedPrecondition(
                "bidirectional mount propagation is impossible with crun on this hybrid "
                "cgroup host: crun runs in a slave mount namespace here (see RuncDriver); "
                "use the native or runc handler")
        self.state_root.mkdir(parents=True, exist_ok=True)
        write_atomic(bundle / "config.json", json.dumps(config(spec), indent=1))
        pidfile = bundle / "pid"
        argv = [*self._base(bundle), "create", "--bundle", str(bundle), "--pid-file",
                str(pidfile)]
        console = -1
        if spec.terminal:
            console = self._create_with_console(argv, spec.id, bundle=bundle, timeout=timeout)
        else:
            self._run([*argv, spec.id], bundle=bundle, timeout=timeout, stdio=stdio)
        return Created(pid=int(pidfile.read_text().strip()), console=console)

    def _create_with_console(self, argv: list[str], cid: str, *, bundle: Path,
                             timeout: float) -> int:
        """runc makes the pty inside the container and sends its master over a socket."""
        proc, master = console.receive_console([*argv, "--console-socket", "{console}", cid],
                                               timeout=timeout)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.wait()
            raise DeadlineExceeded(f"{self.binary} create timed out") from e
        if proc.returncode != 0 or master < 0:
            if master >= 0:
                os.close(master)
            raise InvalidArgument(f"{self.binary} create: {self._last_error(bundle, err)}")
        return master

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        self._run([*self._base(bundle), "start", spec.id], bundle=bundle, timeout=timeout)

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        self._run([*self._base(bundle), "delete", "--force", spec.id], bundle=bundle,
                  timeout=30)


    def end_exec(self, *, bundle: Path, helper_pid: int, kill: bool) -> None:
        exec_process_file(bundle, helper_pid).unlink(missing_ok=True)
        path = exec_pid_file(bundle, helper_pid)
        try:
            pid = int(path.read_text())
        except (FileNotFoundError, ValueError):
            return  # the command never started (or its runtime had no time to say)
        path.unlink(missing_ok=True)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def exec_in_child(self, spec: InitSpec, *, bundle: Path, pid: int,
                      process: ExecProcess) -> int:
        # The container's own process settings (user and supplementary groups, capabilities,
        # no_new_privs) with the exec's command: runc copies them when given none, crun
        # would run the command as root. The pid file gives end_exec the command's host pid
        # (runc/crun cannot pass SIGKILL on).
        helper = os.getpid()
        settings = config(spec)["process"]
        settings.update(args=list(process.args), env=list(process.env),
                        cwd=process.cwd or spec.cwd, terminal=process.tty)
        write_atomic(exec_process_file(bundle, helper), json.dumps(settings))
        argv = [*self._global(), "exec", "--pid-file", str(exec_pid_file(bundle, helper)),
                "--process", str(exec_process_file(bundle, helper))]
        if process.tty:
            # runc/crun in the foreground on our terminal: they make the container's pty,
            # relay it, and follow our window size (SIGWINCH reaches the session leader).
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        argv.append(spec.id)
        os.execvpe(argv[0], argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
