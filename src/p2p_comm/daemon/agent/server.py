"""The daemon's Unix socket: owner-only, peer credentials checked, JSON lines, bounded.

One request per connection: a JSON line (the Python API, MCP), or a ``p2p`` run's byte
pipe (daemon/agent/pipe.py). A request line has a size limit and must arrive within a
deadline; a client that goes away mid-request has its handler cancelled (so a killed
`p2p wait` stops waiting and consumes nothing).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ... import rpc
from ...paths import ensure_private_dir
from ...store import StorageError
from ..base.answers import answered, hold_for_this_connection, hold_in_this_task
from ..base.errors import CommandError
from .progress import progress_sink, unless_gone

log = logging.getLogger("p2p.server")

Dispatch = Callable[[str, dict[str, Any]], Awaitable[Any]]

REQUEST_DEADLINE = 10.0  # seconds a client has to send its whole request line
MAX_CONNECTIONS = 64
# Bytes of request lines being read at once, across every connection: a 10 MiB file as
# base64 fits one, yet a few slow or hostile clients cannot balloon the daemon's memory.
READ_BUDGET = 48 * 1024 * 1024


# The process id of the client being served, for what it could tell us of itself (its
# environment: daemon/app.py warns when that would configure another daemon than this one).
client_pid: contextvars.ContextVar[int | None] = contextvars.ContextVar("client_pid", default=None)


def _peer_creds(writer: asyncio.StreamWriter) -> tuple[int | None, int | None]:
    """The client's (pid, uid), from the kernel."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None, None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def client_environment(pid: int) -> dict[str, str] | None:
    """The environment a local client process started with (/proc), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in data.split(b"\0") if item)
    return {os.fsdecode(key): os.fsdecode(value) for key, _, value in pairs}


class SocketServer:
    """Serves RPC requests on the home's socket, one request per connection."""

    def __init__(self, path: Path, dispatch: Dispatch, max_line: int = rpc.MAX_LINE) -> None:
        self.path = path
        self._dispatch = dispatch
        self._server: asyncio.Server | None = None
        self.max_line = max_line
        self._connections = 0
        self._reading = 0  # bytes of unfinished request lines held right now

    async def start(self) -> None:
        ensure_private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=os.fspath(self.path), limit=64 * 1024
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        hold_for_this_connection()  # this connection's task: its context is its own
        try:
            pid, uid = _peer_creds(writer)
            if uid != os.getuid():
                log.warning("refused a socket connection from another user")
                writer.write(
                    rpc.encode(rpc.error("forbidden", "only the owner may use this daemon."))
                )
                return
            client_pid.set(pid)
            if self._connections > MAX_CONNECTIONS:
                writer.write(rpc.encode(rpc.error("busy", "the daemon has too many clients.")))
                return
            try:
                async with asyncio.timeout(REQUEST_DEADLINE):  # no extra task, unlike wait_for
                    line = await self._read_line(reader)
            except TimeoutError:
                log.info("closed a client that sent no whole request in %ss", REQUEST_DEADLINE)
                return
            except CommandError as exc:
                writer.write(rpc.encode(rpc.error(exc.code, exc.message)))
                return
            if not line:
                return
            if line.startswith(rpc.PIPE_HELLO):
                from . import pipe  # loaded with the first `p2p` run's connection

                await pipe.serve(line, reader, writer, self.reply, self.max_line)
                await writer.drain()
                return
            progress_sink.set(lambda update: writer.write(rpc.encode({"progress": update})))
            reply = await unless_gone(self._answer(line), reader)
            if reply is not None:
                writer.write(rpc.encode(reply))
            answered()  # after the write, in the same step
            if reply is not None:
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("client connection dropped: %s", exc)
        finally:
            answered()  # whatever happened: held work is never dropped
            self._connections -= 1
            writer.close()

    async def _read_line(self, reader: asyncio.StreamReader) -> bytes:
        """One request line, within the per-line limit and the daemon-wide read budget."""
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return b""
                end = chunk.find(b"\n")
                if end >= 0:
                    parts.append(chunk[: end + 1])
                    return b"".join(parts)
                size += len(chunk)
                self._reading += len(chunk)
                if size > self.max_line:
                    raise CommandError(
                        "too_large", "the request is larger than the daemon accepts."
                    )
                if self._reading > READ_BUDGET:
                    raise CommandError("busy", "the daemon is reading too much at once; retry.")
                parts.append(chunk)
        finally:
            self._reading -= size

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = rpc.decode(line)
        except rpc.RpcError as exc:
            return rpc.error(exc.code, exc.message)
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(method, str) or not isinstance(params, dict):
            return rpc.error("bad_request", "method must be a string, params an object.")
        return await self.reply(method, params)

    async def reply(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request, every failure as an error reply."""
        hold_in_this_task()  # its publications wait for the answer
        try:
            return rpc.ok(await self._dispatch(method, params))
        except CommandError as exc:
            return rpc.error(exc.code, exc.message)
        except rpc.RpcError as exc:
            return rpc.error(exc.code, exc.message)
        except StorageError as exc:
            log.error("storage failure: %s", exc)
            return rpc.error("storage", str(exc))
        except Exception:
            log.exception("request failed")
            return rpc.error("internal", "the daemon hit an internal error; see 'p2p daemon logs'.")
