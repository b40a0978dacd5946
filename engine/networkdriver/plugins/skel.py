"""The plugin skeleton: CNI_* env and stdin in, result or error JSON out, exit code."""
from __future__ import annotations

import os
import sys

from engine.networkdriver.plugins import jsonio, spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from typing import Any, Protocol

    class Plugin(Protocol):
        def add(self, req: spec.Request) -> dict[str, Any]:
            """The result in the internal form (see spec.normalize_result)."""
            ...

        def delete(self, req: spec.Request) -> None: ...

        def check(self, req: spec.Request) -> None: ...

        def gc(self, req: spec.Request) -> None: ...

        def status(self, req: spec.Request) -> None: ...


def _debug(msg: str) -> None:
    """Log with the traceback at debug level; ``logging`` is imported only when needed."""
    import logging

    logging.getLogger(__name__).debug(msg, exc_info=True)


def dispatch(plugin: Plugin, env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes]:
    """Run one command; returns (exit code, stdout). Never raises for a plugin error."""
    version = spec.SPEC_VERSION
    try:
        req = spec.parse_request(env, stdin)
        if req.command == "VERSION":
            return 0, _dump(spec.version_info())
        version = req.cni_version
        result = execute(plugin, req)
        return 0, _dump(spec.convert_result(result, version)) if result is not None else b""
    except spec.CNIError as err:
        if err.code != spec.ERR_INCOMPATIBLE_VERSION and version not in spec.SUPPORTED_VERSIONS:
            version = spec.SPEC_VERSION
        return 1, _dump(err.to_json(version))
    except Exception as exc:  # a bug in the conversion: still answer with the spec's error JSON
        return 1, _dump(_internal(exc).to_json(version))


def execute(plugin: Plugin, req: spec.Request) -> dict[str, Any] | None:
    """Run a parsed request: the result in the internal form for ADD, else None. Every
    failure comes out as a CNIError (I/O as 5, netlink as 999 with its message, a bug as an
    internal error): what an exec of the plugin would have printed, for in-process callers
    (a delegating plugin) and :func:`dispatch` alike."""
    try:
        if req.command == "ADD":
            return plugin.add(req)
        if req.command == "DEL":
            plugin.delete(req)
        elif req.command == "CHECK":
            plugin.check(req)
        elif req.command == "GC":
            plugin.gc(req)
        else:
            plugin.status(req)
        return None
    except spec.CNIError:
        raise
    except OSError as exc:
        _debug("I/O failure")
        code = getattr(exc, "cni_code", spec.ERR_IO)
        what = "netlink request failed" if code == spec.ERR_NETLINK else "I/O failure"
        raise spec.CNIError(code, what, str(exc)) from exc
    except Exception as exc:
        raise _internal(exc) from exc


def _internal(exc: Exception) -> spec.CNIError:
    _debug("internal error")
    return spec.CNIError(spec.ERR_INTERNAL, f"internal error: {type(exc).__name__}", str(exc))


def _dump(obj: Mapping[str, Any]) -> bytes:
    return jsonio.dumps(obj).encode()


def main(plugin: Plugin, stdin: bytes | None = None) -> None:
    """The executable's entry point; ``stdin``: already read (by the agent shim), else read
    here."""
    if os.environ.get("KPY_CNI_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    if stdin is None:
        stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    code, out = dispatch(plugin, os.environ, stdin)
    if out:
        sys.stdout.buffer.write(out + b"\n")
        sys.stdout.buffer.flush()
    sys.stderr.flush()
    # the answer is out and the plugin's threads are joined: skip the interpreter's teardown
    # (module cleanup, collection; ~3 ms of a plugin exec)
    os._exit(code)
