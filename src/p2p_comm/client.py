"""The Python API: `Client`, one blocking method per ``p2p`` command, over the daemon's socket.

The same code path serves the ``p2p`` CLI, so it stays as light as the CLI: no asyncio, no
``typing`` at run time, nothing from nostr_sdk. `AsyncClient` (module ``aclient``) shares the
method definitions in `Commands` and swaps the transport for asyncio streams.

Exactly-once delivery: ``inbox`` and ``wait`` read events without consuming them, and the
client sends ``ack`` for them only once it has them in hand, just before returning them. A
``wait`` that is interrupted, times out on the socket or is cancelled never acks, so the next
``inbox`` shows the same events again.

`pipe` is the ``p2p`` CLI's way in: it hands the daemon the command line and copies back
the bytes and the exit code the daemon renders (the byte pipe of rpc.py), so that a CLI run
imports neither json nor argparse.
"""

from __future__ import annotations

import os

from . import rpc
from .codes import REQUEST_TIMEOUT, WAIT_MARGIN
from .locations import HomeError, home_str, socket_path

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable
    from typing import Any, Generic, TypeVar

    Result = dict[str, Any]
    _R = TypeVar("_R")
else:
    # At run time `Commands` needs no real generics: a stand-in that accepts `Generic[...]`.
    class Generic:
        def __class_getitem__(cls, _item: object) -> type:
            return cls

    _R = None

# What the daemon's own reply codes mean for a caller: these say it could not be reached.
UNREACHABLE = frozenset({"daemon_unavailable", "daemon_gone", "unsafe_socket", "timeout"})

_SEND_TIMEOUT = 120.0
_FILE_TIMEOUT = 600.0


class P2PError(Exception):
    """Any failure of a command: ``code`` is the JSON error code, ``message`` one sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"P2PError({self.code!r}, {self.message!r})"

    @property
    def unreachable(self) -> bool:
        """True when the daemon could not be reached or started (not a refusal of the command)."""
        return self.code in UNREACHABLE


def default_home() -> str:
    """``P2P_HOME`` or ``~/.openclaw``; an empty ``P2P_HOME`` as a `P2PError`."""
    try:
        return home_str()
    except HomeError as exc:
        raise P2PError("config", str(exc)) from None


def _wait_timeout(timeout: float) -> float:
    # NaN fails every comparison, so test for the good range rather than the bad one.
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise P2PError("usage", "timeout must be a number of seconds.")
    if not 0 <= timeout < float("inf"):
        raise P2PError("usage", "timeout must be a finite, non-negative number of seconds.")
    return float(timeout)


class Commands(Generic[_R]):
    """One method per command. A subclass supplies ``_request``; ``_R`` is what it returns
    (a result dict for `Client`, an awaitable of one for `AsyncClient`)."""

    def _request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
        on_progress: rpc.ProgressCallback | None = None,
        ack: bool = False,
    ) -> _R:
        raise NotImplementedError

    def status(self) -> _R:
        """Identity, relays, calls, unread counts."""
        return self._request("status")

    def whoami(self) -> _R:
        """Own name, npub, hex key and relays."""
        return self._request("whoami")

    def list_agents(self, capability: str | None = None) -> _R:
        """Agents online now, optionally only those announcing ``capability``."""
        return self._request("list", {"capability": capability})

    def call(self, agent: str, topic: str) -> _R:
        """Ring ``agent`` (npub, hex key, or a name unique among online agents)."""
        return self._request("call", {"agent": agent, "topic": topic})

    def answer(
        self,
        decision: str | bool = "accept",
        reason: str = "",
        call_id: str | None = None,
        *,
        accept: bool | None = None,
    ) -> _R:
        """Accept or reject a ringing incoming call: ``decision`` "accept" or "reject" (True
        and False, or ``accept=``, say the same)."""
        if accept is not None:
            decision = accept
        if isinstance(decision, bool):
            decision = "accept" if decision else "reject"
        return self._request("answer", {"decision": decision, "reason": reason, "call": call_id})

    def doctor(self) -> _R:
        """Probe each relay with a message to ourselves: a verdict per relay."""
        return self._request("doctor", timeout=_SEND_TIMEOUT)

    def send(self, text: str, call_id: str | None = None, force: bool = False) -> _R:
        """Send a message in the active call (or ``call_id``); ``force``: although a
        runaway loop is suspected (what a `loop_suspected` event's advice asks for)."""
        params: dict[str, Any] = {"text": text, "call": call_id}
        if force:
            params["force"] = True
        return self._request("send", params, timeout=_SEND_TIMEOUT)

    def invite(self, agent: str, anyone_may_invite: bool = False, call_id: str | None = None) -> _R:
        """Add ``agent`` to the active call, which becomes a group call."""
        params = {"agent": agent, "anyone_may_invite": anyone_may_invite, "call": call_id}
        return self._request("invite", params, timeout=_SEND_TIMEOUT)

    def send_file(
        self,
        path: str | os.PathLike[str] | None = None,
        data: bytes | str | None = None,
        name: str | None = None,
        call_id: str | None = None,
        on_progress: rpc.ProgressCallback | None = None,
    ) -> _R:
        """Send a file: from ``path`` (read by the daemon), or ``data`` (bytes, or a base64
        string) under ``name``. ``name`` defaults to the file name of ``path``."""
        if (path is None) == (data is None):
            raise P2PError("usage", "give either path or data, not both and not neither.")
        params: dict[str, Any] = {"call": call_id}
        if path is not None:
            params["path"] = os.path.abspath(path)
            params["name"] = name or os.path.basename(params["path"])
        else:
            if not name:
                raise P2PError("usage", "a file sent as data needs a name.")
            if isinstance(data, bytes | bytearray | memoryview):
                import base64

                data = base64.b64encode(data).decode("ascii")
            params["data"], params["name"] = data, name
        return self._request("sendfile", params, _FILE_TIMEOUT, on_progress)

    def escalate(self, text: str, call_id: str | None = None) -> _R:
        """Tell the peer and the owner that a human is needed."""
        return self._request("escalate", {"text": text, "call": call_id})

    def end(self, reason: str = "", call_id: str | None = None, all: bool = False) -> _R:
        """End the call; the result holds its transcript. ``all``: end a group call for
        everyone (its starter only)."""
        params: dict[str, Any] = {"reason": reason, "call": call_id}
        if all:
            params["all"] = True
        return self._request("end", params)

    def inbox(
        self,
        peek: bool = False,
        call_id: str | None = None,
        after: int | None = None,
        max: int | None = None,
    ) -> _R:
        """Unread events, consumed once returned (``peek=True`` leaves them unread).
        ``after``: only events whose ``event_id`` is greater; ``max``: at most that many
        (the rest stay unread)."""
        params = {"peek": bool(peek), "call": call_id, "after": after, "max": max}
        return self._request("inbox", params, ack=not peek)

    def wait(
        self,
        timeout: float = 30.0,
        peek: bool = False,
        call_id: str | None = None,
        after: int | None = None,
        max: int | None = None,
    ) -> _R:
        """Block until an unread event arrives or ``timeout`` seconds pass (then
        ``timed_out`` is true); consumed as by `inbox` (``max``: at most that many)."""
        seconds = _wait_timeout(timeout)
        params = {"peek": bool(peek), "call": call_id, "after": after, "timeout": seconds}
        params["max"] = max
        return self._request("wait", params, seconds + WAIT_MARGIN, ack=not peek)

    def transcript(self, call_id: str | None = None) -> _R:
        """A call's transcript (default: the latest call)."""
        return self._request("transcript", {"call": call_id})

    def history(self, limit: int | None = None) -> _R:
        """Past and current calls, newest first (the ``limit`` newest)."""
        return self._request("history", {"limit": limit} if limit is not None else {})

    def contacts(self, action: str = "list", agent: str = "", name: str = "") -> _R:
        """``action`` add, remove or list the contacts (call_policy = contacts)."""
        return self._request("contacts", {"action": action, "agent": agent, "name": name})

    def block(self, agent: str) -> _R:
        """Drop everything from ``agent``."""
        return self._request("block", {"agent": agent})

    def unblock(self, agent: str) -> _R:
        """Undo a block."""
        return self._request("unblock", {"agent": agent})


def for_python(result: Any) -> None:
    """Advice in an event said for the transport it goes to (the daemon words it for the
    command line)."""
    for event in result.get("events", ()) if isinstance(result, dict) else ():
        if isinstance(event, dict) and "how_to_lift" in event:
            call = str(event.get("call_id") or "")[:8]
            event["how_to_lift"] = f'send(text, call_id="{call}", force=True)'


def event_ids(result: Any) -> list[int]:
    """The ids to acknowledge for an inbox/wait result."""
    events = result.get("events") if isinstance(result, dict) else None
    return [e["event_id"] for e in events or () if isinstance(e, dict) and "event_id" in e]


def launch(home: str) -> None:
    """Start the daemon for ``home`` (blocking), as a P2PError on failure."""
    from pathlib import Path

    from . import launcher
    from .paths import HomePaths

    try:
        launcher.start(HomePaths(Path(home)))
    except launcher.LaunchError as exc:
        raise P2PError("daemon_unavailable", f"cannot start the daemon: {exc}") from None


class Client(Commands["Result"]):
    """Blocking client of one agent's daemon; starts the daemon on first use if needed.

    ``home`` defaults to ``P2P_HOME`` or ``~/.openclaw``. Each method returns the command's
    result as a dict (the ``--json`` document without ``ok``) or raises `P2PError`.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, start: bool = True) -> None:
        self.home = os.path.abspath(os.fspath(home)) if home is not None else default_home()
        self.socket = socket_path(self.home)
        self.start = start

    def __repr__(self) -> str:
        return f"Client({self.home!r})"

    def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
        on_progress: rpc.ProgressCallback | None = None,
    ) -> Any:
        """One raw RPC, starting the daemon first if nothing answers."""
        try:
            try:
                return rpc.request(self.socket, method, params, timeout, on_progress)
            except rpc.DaemonUnavailable:
                if not self.start:
                    raise
            except OSError:
                # E.g. the home is not a directory: starting the daemon says what is wrong.
                if not self.start:
                    raise
            launch(self.home)
            return rpc.request(self.socket, method, params, timeout, on_progress)
        except rpc.RpcError as exc:
            raise P2PError(exc.code, exc.message) from None

    def _request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
        on_progress: rpc.ProgressCallback | None = None,
        ack: bool = False,
    ) -> Result:
        result = self.request(method, params, timeout, on_progress)
        for_python(result)
        ids = event_ids(result) if ack else []
        if ids:
            # Acked only now that the events are about to be returned: a failure or an
            # interrupt before this line leaves them unread for the next inbox.
            self.request("ack", {"event_ids": ids})
        return result  # type: ignore[no-any-return]


# The CLI's byte pipe ------------------------------------------------------------------


def pipe(
    home: str,
    argv: list[str],
    out: Callable[[bytes], None],
    err: Callable[[bytes], None],
    read_stdin: Callable[[], bytes],
    before_start: Callable[[], None] | None = None,
) -> int | None:
    """Run one ``p2p`` command line in the daemon of ``home``, starting it if nothing answers.

    ``out`` and ``err`` write (and flush) bytes to standard output and error; ``read_stdin``
    is called only if the command reads ``-``; ``before_start`` runs before a daemon is
    started (the CLI checks the command line there). Returns the exit code, or None when
    the command runs in the CLI itself; raises `P2PError` when the daemon cannot be reached.
    What ``out`` raises (a closed stdout) goes through untouched, before any acknowledgement.
    """
    path = socket_path(home)
    try:
        try:
            sock = rpc.connect(path, REQUEST_TIMEOUT)
        except (rpc.DaemonUnavailable, OSError):
            # E.g. the home is not a directory: starting the daemon says what is wrong.
            if before_start is not None:
                before_start()
            launch(home)
            sock = rpc.connect(path, REQUEST_TIMEOUT)
        return _PipeRun(sock, out, err, read_stdin).run(_hello(argv))
    except rpc.RpcError as exc:
        raise P2PError(exc.code, exc.message) from None


def _hello(argv: list[str]) -> bytes:
    try:
        cwd = os.fsencode(os.getcwd())
    except OSError:
        cwd = b""  # the directory is gone: relative paths are refused by the daemon
    # surrogatepass: an argument that was not UTF-8 stays invalid, and the daemon says so.
    fields = [cwd.hex(), *(word.encode("utf-8", "surrogatepass").hex() for word in argv)]
    return rpc.PIPE_HELLO + " ".join(fields).encode() + b"\n"


class _PipeRun:
    """One command line's conversation: frames in, answers out (see rpc.py)."""

    def __init__(
        self,
        sock: _socket.socket,
        out: Callable[[bytes], None],
        err: Callable[[bytes], None],
        read_stdin: Callable[[], bytes],
    ) -> None:
        self.sock = sock
        self.out, self.err, self.read_stdin = out, err, read_stdin
        self.buffer = bytearray()

    def run(self, hello: bytes) -> int | None:
        fallback: bytes | None = None
        try:
            self._send(hello)
            while True:
                tag, payload = self._frame()
                if tag == b"1":
                    self.out(payload)
                elif tag == b"2":
                    self.err(payload)
                elif tag == b"X":
                    return int(payload)
                elif tag == b"A":
                    self._send(b"a")  # `out` has written and flushed everything before this
                elif tag == b"I":
                    data = self.read_stdin()
                    self._send(b"%d\n" % len(data) + data)
                elif tag == b"T":
                    self.sock.settimeout(float(payload))
                elif tag == b"Q":
                    fallback = payload
                elif tag == b"L":
                    return None
        except rpc.RpcError as exc:
            if fallback is None or exc.code not in UNREACHABLE:
                raise
            # The daemon had the file durably queued before it went away: it goes out when
            # the daemon runs again, so the agent must not send it a second time.
            self.out(fallback)
            return 0
        finally:
            self.sock.close()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise rpc.RpcError("timeout", "the daemon did not take the request in time.") from None
        except OSError:
            raise rpc.RpcError("daemon_gone", "the daemon closed the connection.") from None

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise rpc.RpcError("timeout", "the daemon did not answer in time.") from None
        except OSError:
            chunk = b""
        if not chunk:
            raise rpc.RpcError("daemon_gone", "the daemon closed the connection.")
        self.buffer += chunk

    def _frame(self) -> tuple[bytes, bytes]:
        buffer = self.buffer
        while (end := buffer.find(b"\n")) < 0:
            if len(buffer) > 65536:
                raise rpc.RpcError("bad_reply", "the daemon's reply is not understood.")
            self._fill()
        head = bytes(buffer[:end])
        del buffer[: end + 1]
        if head[:1] == b"{":
            # A refusal before the daemon read the request (busy, forbidden): a JSON line.
            reply = rpc.decode(head)
            error = reply.get("error") or {}
            code, message = str(error.get("code", "error")), str(error.get("message", ""))
            if code == "bad_request":  # a daemon from before the byte pipe took it for JSON
                code = "daemon_unavailable"
                message = "the running daemon is older than this p2p; run 'p2p daemon restart'."
            raise rpc.RpcError(code, message)
        size = int(head[1:])
        while len(buffer) < size:
            self._fill()
        payload = bytes(buffer[:size])
        del buffer[:size]
        return head[:1], payload
