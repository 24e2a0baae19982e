"""The local protocol between the ``p2p`` CLI and its daemon.

One JSON object per line over a Unix stream socket. A request is
``{"method": str, "params": {...}}``; a reply is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": str, "message": str}}``. A long request may be
preceded by any number of ``{"progress": {...}}`` lines. The Python API and the MCP
server speak this.

The ``p2p`` CLI speaks a second, smaller dialect on the same socket, the byte pipe: the
daemon parses the command line and renders the output, so the CLI needs neither json nor
argparse. Its first line is ``pipe 1 <cwd> <arg>...`` with every field the hex of its
bytes. The daemon answers in frames, each ``<tag><length>\n<payload>`` (`PIPE_FRAMES`); the
CLI answers the frames that ask it something: ``I`` with ``<length>\n<stdin bytes>``, ``A``
with the single byte ``a`` once the output so far is written and flushed. The last frame is
``X`` with the exit code. This module imports neither asyncio nor nostr_sdk, nor json until
a JSON request is made, so the CLI stays fast.
"""

from __future__ import annotations

# The C module, not `socket`: the wrapper module pulls in enum and selectors, which would
# cost every CLI run several milliseconds.
import _socket
import os
import stat

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    ProgressCallback = Callable[[dict[str, Any]], None]
    PathLike = str | os.PathLike[str]

MAX_LINE = 64 * 1024 * 1024  # a request carrying a 10 MiB file as base64 fits easily

PIPE_HELLO = b"pipe 1 "  # the first bytes of a byte-pipe request (version 1)
PIPE_FRAMES = {
    b"1": "bytes for standard output",
    b"2": "bytes for standard error",
    b"I": "send standard input now",
    b"A": "acknowledge, once the output so far is written and flushed",
    b"T": "wait this many seconds (decimal) for the next frame from now on",
    b"Q": "standard output to show if the connection ends before the exit frame",
    b"L": "run this command line in the CLI itself (it needs no daemon, or asks for help)",
    b"X": "the exit code (decimal); the last frame",
}


class RpcError(Exception):
    """An error reply from the daemon, or a failure to reach it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonUnavailable(RpcError):
    """Nothing is listening on the socket."""

    def __init__(self, message: str = "the daemon is not running.") -> None:
        super().__init__("daemon_unavailable", message)


def encode(message: dict[str, Any]) -> bytes:
    import json  # here, not at the top: the CLI's byte pipe never needs it

    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    import json

    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RpcError("bad_request", "the request is not valid JSON.") from None
    if not isinstance(value, dict):
        raise RpcError("bad_request", "the request must be a JSON object.")
    return value


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def check_socket_safe(path: PathLike) -> None:
    """Refuse a socket that is not ours or that other users could open."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise DaemonUnavailable() from None
    if not stat.S_ISSOCK(info.st_mode):
        raise RpcError("unsafe_socket", f"{path} is not a socket; refusing to use it.")
    if info.st_uid != os.getuid():
        raise RpcError("unsafe_socket", f"socket {path} belongs to another user; refusing it.")
    if info.st_mode & 0o077:
        raise RpcError(
            "unsafe_socket",
            f"socket {path} is open to other users (mode {info.st_mode & 0o777:o}); "
            "refusing it. Run 'p2p daemon restart' to recreate it.",
        )


def connect(path: PathLike, timeout: float | None) -> _socket.socket:
    """A connection to the daemon's socket, once it is known to be safe. `DaemonUnavailable`
    when nothing listens; other OSErrors (a home that is not a directory, ...) as they are."""
    check_socket_safe(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise DaemonUnavailable() from None
    except TimeoutError:
        sock.close()
        raise RpcError("timeout", "the daemon did not accept a connection in time.") from None
    except BaseException:
        sock.close()
        raise
    return sock


def request(
    path: PathLike,
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float | None = 30.0,
    on_progress: ProgressCallback | None = None,
) -> Any:
    """Send one request and return its result, raising RpcError on an error reply."""
    sock = connect(path, timeout)
    try:
        sock.sendall(encode({"method": method, "params": params or {}}))
        lines = _LineReader(sock)
        while True:
            message = decode(lines.next())
            if "progress" not in message:
                break
            if on_progress is not None:
                on_progress(message["progress"])
    except TimeoutError:
        raise RpcError("timeout", f"the daemon did not answer '{method}' in time.") from None
    except (BrokenPipeError, ConnectionResetError):
        raise RpcError("daemon_gone", "the daemon closed the connection.") from None
    finally:
        sock.close()
    if message.get("ok"):
        return message.get("result")
    err = message.get("error") or {}
    raise RpcError(str(err.get("code", "error")), str(err.get("message", "unknown error")))


class _LineReader:
    """Newline-delimited messages from a socket, keeping what follows a line for the next."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise RpcError("daemon_gone", "the daemon closed the connection without answering.")
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE:
                raise RpcError("too_large", "the daemon's reply is too large.")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
