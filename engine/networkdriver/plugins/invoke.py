"""Finding and invoking a plugin as the spec says: a file named ``type`` in CNI_PATH dirs.

When the file found is one of our own console scripts, the caller may run its module
in-process (same code, same env and stdin), skipping a Python start.
"""
from __future__ import annotations

import os
import sys

from engine.networkdriver.plugins import jsonio, skel, spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from typing import Any

    from engine.networkdriver.plugins.reaper import Reaper

_IMPORT = b"from engine.networkdriver.plugins."
PLUGIN_MODULES = {
    "engine.networkdriver.plugins.bridge",
    "engine.networkdriver.plugins.hostlocal",
    "engine.networkdriver.plugins.loopback",
}


def find(kind: str, path: tuple[str, ...] | list[str]) -> str:
    spec.validate_plugin_type(kind)
    for d in path:
        candidate = os.path.join(d, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise spec.CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE, f"failed to find plugin {kind!r} in path",
                        ":".join(path))


_SEEN: dict[tuple[str, int, int, int], str | None] = {}


def our_module(executable: str) -> str | None:
    """The plugin module behind one of our console scripts, else None (remembered per
    file identity and mtime, so the engine reads each wrapper once)."""
    try:
        st = os.stat(executable)
    except OSError:
        return None
    key = (executable, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SEEN:
        if len(_SEEN) > 64:
            _SEEN.clear()
        _SEEN[key] = _read_module(executable)
    return _SEEN[key]


def _read_module(executable: str) -> str | None:
    try:
        with open(executable, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    start = head.find(_IMPORT)
    if start < 0:
        return None
    module, sep, _ = head[start + 5:].partition(b" import main")
    name = module.decode(errors="replace")
    return name if sep and name in PLUGIN_MODULES else None


def parse_output(name: str, code: int, out: bytes, err: bytes = b"") -> dict[str, Any] | None:
    """A plugin's stdout: the result (or None when empty) on success, a CNIError otherwise."""
    text = out.strip()
    if code == 0:
        if not text:
            return None
        try:
            result = jsonio.loads(text)
        except ValueError as exc:
            raise spec.CNIError(spec.ERR_DECODE, f"plugin {name} printed a malformed result",
                                text[:200].decode(errors="replace")) from exc
        if not isinstance(result, dict):
            raise spec.CNIError(spec.ERR_DECODE, f"plugin {name} result is not an object")
        return result
    try:
        body = jsonio.loads(text)
        return_code = int(body["code"])
        msg = str(body.get("msg", ""))
        details = str(body.get("details", ""))
    except (ValueError, KeyError, TypeError):
        raise spec.CNIError(spec.ERR_INTERNAL, f"plugin {name} failed with exit code {code}",
                            (err or text).decode(errors="replace").strip()[:2000]) from None
    raise spec.CNIError(return_code, msg, details)


def call(executable: str, *, env: Mapping[str, str], stdin: bytes,
         in_process: bool = True, timeout: float | None = None,
         reaper: Reaper | None = None) -> dict[str, Any] | None:
    """Invoke the plugin at ``executable`` with ``env`` and ``stdin``; ``reaper``: given to
    our plugins when they run in-process (see plugins/reaper.py)."""
    name = os.path.basename(executable)
    module = our_module(executable) if in_process else None
    if module is not None:
        __import__(module)  # importlib.import_module would import warnings: exec start-up
        runner = sys.modules[module]
        code, out = runner.run(env, stdin, reaper=reaper)
        return parse_output(name, code, out)
    import subprocess

    try:
        proc = subprocess.run([executable], input=stdin, env=dict(env), capture_output=True,
                              check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise spec.CNIError(spec.ERR_TRY_AGAIN_LATER, f"plugin {name} timed out",
                            f"after {timeout}s") from exc
    except OSError as exc:
        raise spec.CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE, f"cannot execute plugin {name}",
                            str(exc)) from exc
    return parse_output(name, proc.returncode, proc.stdout, proc.stderr)


def delegate(kind: str, *, command: str, env: Mapping[str, str], stdin: bytes,
             path: tuple[str, ...], request: spec.Request | None = None,
             in_process: bool = True) -> dict[str, Any] | None:
    """A plugin calling its delegate (IPAM): same env, CNI_COMMAND set, same config.

    ``request``: the delegating plugin's own, parsed and validated from the same env and
    stdin. When the delegate found is one of ours, it runs on that request in this process
    (see skel.execute) and its result comes back in the internal form: no JSON written and
    read back, no second parse of a configuration the caller already checked (the checks of
    the delegate's command are a subset of the caller's: same config, same CNI_* vars)."""
    executable = find(kind, path)
    env = {**env, "CNI_COMMAND": command}
    if request is None or not in_process or (module := our_module(executable)) is None:
        return call(executable, env=env, stdin=stdin, in_process=in_process)
    __import__(module)
    plugin = sys.modules[module].PLUGIN
    return skel.execute(plugin, spec.Request(
        command=command, container_id=request.container_id, netns=request.netns,
        ifname=request.ifname, args=request.args, path=request.path, stdin=stdin,
        config=request.config, env=env))
