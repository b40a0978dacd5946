"""Install our plugins into a CNI bin dir as fast-starting executables.

A CNI runtime execs ``<bin dir>/<type>``. The venv's console scripts work there too, but
the wrappers written here start faster: ``python -IS`` skips ``site`` (and the editable
install's import hook, and importlib.metadata) and puts the source tree on sys.path; the
plugins need nothing but the standard library.

``--python auto`` picks, among this interpreter and the others of the same version on PATH,
the one that starts with the least CPU time: a distribution's build (PGO, LTO, libpython
linked in) starts a plugin ~30% cheaper than a ``--enable-shared`` build such as pyenv's.

``--agent-socket``: the executables first hand the invocation to the resident CNI agent
listening there (plugins/shim.py, plugins/agent.py) and run the plugin themselves only
when it cannot serve; with ``--agent-autostart`` the first of them that finds no agent
starts one. ``KPY_CNI_AGENT_SOCKET`` in a plugin's environment overrides the path ("off":
no agent). Without a socket (the default of :func:`install`), the executables never try.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

PLUGINS = {
    "kpy-bridge": "engine.networkdriver.plugins.bridge",
    "kpy-host-local": "engine.networkdriver.plugins.hostlocal",
    "kpy-loopback": "engine.networkdriver.plugins.loopback",
}
SOURCE_ROOT = Path(__file__).resolve().parents[3]


def wrapper(module: str, python: str = sys.executable, *, agent_socket: str | None = None,
            autostart: bool = False) -> str:
    """The executable: the agent shim first (it exits when the agent answered), then the
    plugin itself with the stdin the shim read."""
    return (f"#!{python} -IS\n"
            "# A kubelet-py CNI plugin, written by `make cni-plugins`.\n"
            "import sys\n"
            f"sys.path[:0] = [{str(SOURCE_ROOT)!r}]\n"
            "from engine.networkdriver.plugins import shim\n"
            f"stdin = shim.forward({module!r}, {agent_socket!r}, autostart={autostart!r})\n"
            f"from {module} import main\n"
            "main(stdin)\n")


def install(bin_dir: Path, *, python: str = sys.executable, agent_socket: str | None = None,
            autostart: bool = False) -> list[Path]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name, module in PLUGINS.items():
        target = bin_dir / name
        tmp = bin_dir / f".{name}.tmp"
        tmp.write_text(wrapper(module, python, agent_socket=agent_socket, autostart=autostart))
        tmp.chmod(0o755)
        os.replace(tmp, target)
        done.append(target)
    return done


def _fits(python: str) -> bool:
    """Same major.minor as this interpreter (the .pyc files are shared) and able to load the
    plugins from the source tree."""
    code = (f"import sys; sys.path[:0] = [{str(SOURCE_ROOT)!r}]; "
            f"assert sys.version_info[:2] == {tuple(sys.version_info[:2])!r}; "
            + "; ".join(f"import {m}" for m in PLUGINS.values()))
    return subprocess.run([python, "-IS", "-c", code], capture_output=True,
                          check=False).returncode == 0


def _startup_cpu(python: str, runs: int = 7) -> float:
    """Median CPU seconds of a bare ``python -IS`` start (children's rusage, per run)."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([python, "-IS", "-c", "pass"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return sorted(samples)[len(samples) // 2]


def candidates() -> list[str]:
    """This interpreter and the others of its version on PATH, real paths, deduplicated."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = [sys.executable, shutil.which(name) or "", shutil.which(f"python{sys.version_info[0]}")
             or ""]
    for d in ("/usr/bin", "/usr/local/bin"):
        found.append(os.path.join(d, name))
    seen: dict[str, str] = {}
    for p in found:
        if p and os.access(p, os.X_OK):
            seen.setdefault(os.path.realpath(p), p)
    return list(seen.values())


def fastest_python() -> str:
    usable = [p for p in candidates() if _fits(p)]
    return min(usable, key=_startup_cpu) if len(usable) > 1 else sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the wrappers; 'auto': the fastest-starting one")
    parser.add_argument("--agent-socket", default="",
                        help="the CNI agent's socket the executables try first ('': none)")
    parser.add_argument("--agent-autostart", action=argparse.BooleanOptionalAction,
                        default=False, help="the first executable finding no agent starts one")
    args = parser.parse_args()
    python = fastest_python() if args.python == "auto" else args.python
    for path in install(args.bin_dir, python=python, agent_socket=args.agent_socket or None,
                        autostart=args.agent_autostart):
        print(path)


if __name__ == "__main__":
    main()
