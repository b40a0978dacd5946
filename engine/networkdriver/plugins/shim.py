"""The thin side of a plugin executable: hand the invocation to the resident CNI agent.

An installed plugin (see install.py) calls :func:`forward` first. It connects to the agent's
unix socket, sends the plugin name, the source root, the whole environment and stdin, and an
fd of ``CNI_NETNS`` (SCM_RIGHTS, so the agent never resolves the path itself), then writes
the agent's stdout bytes and exits with its code. It returns (with the stdin it read) only
when the agent cannot serve: no socket, refused, a different owner, or the agent answered
"fallback" (another mount or network namespace, another uid, another source tree) or
"stale" (its code changed on disk); the executable then runs the plugin itself, as before.
Once the request is sent, a lost agent is a CNI error (code 11, try again later), never a
success. With ``autostart``, a shim that found no agent starts one, detached (see
:func:`start_agent`; the agent exits after an idle timeout).

Imports: the built-in modules ``sys``, ``posix`` and ``_socket`` only: at a ``python -IS``
start ``os`` would cost ~2.5 ms of CPU and ``__future__`` ~1 ms (hence no ``from __future__
import annotations`` here: the annotations below are valid at run time); ``fcntl`` only to
start an agent.
"""
import _socket
import posix as os  # the built-in half of os: what the shim needs, without os's imports
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

MAGIC = b"KPYCNI1\n"
REPLY_RESULT, REPLY_FALLBACK, REPLY_STALE = b"R", b"F", b"S"
ENV_SOCKET = "KPY_CNI_AGENT_SOCKET"  # overrides the installed path; "" or "off": no agent
LOCK_NAME = "agent.lock"  # beside the socket: held by the running agent, holds its pid
ERR_TRY_AGAIN_LATER = 11
_HEADER = 10  # reply: kind (1), exit code (1), body length (8)


def frame(*fields: bytes) -> bytes:
    """``MAGIC`` then each field as an 8-byte little-endian length and its bytes."""
    return MAGIC + b"".join(len(f).to_bytes(8, "little") + f for f in fields)


def env_block(env: "Sequence[tuple[bytes, bytes]]") -> bytes:
    return b"\0".join(k + b"=" + v for k, v in env)


def reply(kind: bytes, code: int, body: bytes) -> bytes:
    return kind + bytes((code & 0xFF,)) + len(body).to_bytes(8, "little") + body


def _debug(msg: str) -> None:
    if os.environ.get(b"KPY_CNI_DEBUG"):
        os.write(2, f"kpy-cni-shim: {msg}\n".encode())


def _read_stdin() -> bytes:
    if sys.stdin is None or os.isatty(0):
        return b""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(0, 1 << 20)
        except OSError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _open_netns(path: str) -> int:
    """An fd of CNI_NETNS to pass along, or -1 (the agent then reports on the path)."""
    if not path:
        return -1
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return -1


def cni_version(stdin: bytes) -> str:
    """The config's cniVersion, found without a JSON parser (for the shim's own errors)."""
    at = stdin.find(b'"cniVersion"')
    if at >= 0:
        start = stdin.find(b'"', stdin.find(b":", at) + 1)
        end = stdin.find(b'"', start + 1)
        value = stdin[start + 1:end]
        if 0 <= start < end and 0 < len(value) < 16 and value.replace(b".", b"").isdigit():
            return value.decode()
    return "1.1.0"


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def _fail(stdin: bytes, msg: str, details: str) -> "NoReturn":
    details = details.replace("\\", "\\\\").replace('"', '\\"')
    body = (f'{{"cniVersion":"{cni_version(stdin)}","code":{ERR_TRY_AGAIN_LATER},'
            f'"msg":"{msg}","details":"{details}"}}\n')
    _write_all(body.encode())
    os._exit(1)


def _recv_reply(sock: _socket.socket) -> bytes:
    data = b""
    want = _HEADER
    while len(data) < want:
        chunk = sock.recv(max(want - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
        if len(data) >= _HEADER:
            want = _HEADER + int.from_bytes(data[2:_HEADER], "little")
    return data if len(data) == want else b""


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError as exc:
        sock.close()
        _debug(f"no agent at {path}: {exc.strerror}")
        return None
    if int.from_bytes(cred[4:8], sys.byteorder) != os.geteuid():
        sock.close()
        _debug(f"agent at {path} runs as another user")
        return None
    return sock


def forward(plugin: str, socket_path: str | None, *, autostart: bool = False) -> bytes | None:
    """Have the agent run ``plugin``; exits the process with its answer. Returns only when the
    agent cannot serve: the stdin read so far (None: not read), for the plugin to run here."""
    env = os.environ
    override = env.get(ENV_SOCKET.encode())
    path = socket_path if override is None else override.decode()
    if not path or path == "off":
        return None
    sock = _connect(path)
    if sock is None:
        if autostart:
            start_agent(path)
        return None
    stdin = _read_stdin()
    root = sys.path[0]
    netns = env.get(b"CNI_NETNS", b"").decode()
    request = frame(plugin.encode(), root.encode(), env_block(list(env.items())), stdin)
    fd = _open_netns(netns)
    try:
        if fd >= 0:
            rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
            sent = sock.sendmsg([request], rights)
            os.close(fd)
        else:
            sent = sock.sendmsg([request])
        if sent < len(request):
            sock.sendall(request[sent:])
        data = _recv_reply(sock)
    except OSError as exc:
        _fail(stdin, "the CNI agent failed during the request", f"{path}: {exc.strerror}")
    if not data:
        _fail(stdin, "the CNI agent ended before answering", path)
    kind, body = data[:1], data[_HEADER:]
    if kind == REPLY_RESULT:
        _write_all(body)
        os._exit(data[1])
    _debug(f"agent answered {kind.decode()}: {body.decode(errors='replace')}")
    if kind not in (REPLY_FALLBACK, REPLY_STALE):
        _fail(stdin, "the CNI agent answered something unknown", kind.hex())
    return stdin


def agent_command(socket_path: str, lock_fd: int) -> list[str]:
    """The agent's command line, on this interpreter and this source tree."""
    code = (f"import sys; sys.path[:0] = [{sys.path[0]!r}]\n"
            "from engine.networkdriver.plugins.agent import main\nmain()")
    return [sys.executable, "-IS", "-c", code, "--socket", socket_path,
            "--lock-fd", str(lock_fd)]


def start_agent(socket_path: str) -> bool:
    """Start the agent detached (double fork, setsid, stdio on /dev/null, other fds closed),
    unless one holds the lock beside the socket: the lock is taken here and handed to the
    agent through fork and exec, so concurrent shims start one agent. True if started."""
    import fcntl

    directory = socket_path.rpartition("/")[0] or "."
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        _debug(f"cannot create {directory}: {exc.strerror}")
        return False
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        _debug(f"{directory} must be a 0700 directory of uid {os.geteuid()}")
        return False
    lock = os.open(f"{directory}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return False  # an agent holds it: running, starting or draining
    argv = agent_command(socket_path, lock)
    env = os.environ
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(null, target)
            os.closerange(3, lock)
            os.closerange(lock + 1, 65536)
            os.set_inheritable(lock, True)
            agent_pid = os.fork()
            if agent_pid == 0:
                os.execve(argv[0], argv, {b"PATH": env.get(b"PATH", b"/usr/bin:/bin")})
            # the lock names the agent from now on, not once its interpreter is up
            os.ftruncate(lock, 0)
            os.pwrite(lock, f"{agent_pid}\n".encode(), 0)
        finally:
            os._exit(0)
    os.close(lock)  # the agent's copy keeps the lock
    os.waitpid(pid, 0)
    _debug(f"started an agent at {socket_path}")
    return True
