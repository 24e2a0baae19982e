"""The daemon's Unix socket: owner-only, peer credentials checked, JSON lines."""

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

from .. import rpc
from ..paths import ensure_private_dir

log = logging.getLogger("p2p.server")

Dispatch = Callable[[str, dict[str, Any]], Awaitable[Any]]

# Set while a request is served: a handler reports progress to its client through it.
progress_sink: contextvars.ContextVar[Callable[[dict[str, Any]], None] | None] = (
    contextvars.ContextVar("progress_sink", default=None)
)


def report_progress(update: dict[str, Any]) -> None:
    """Send a progress line to the client of the current request, if it has one."""
    sink = progress_sink.get()
    if sink is not None:
        sink(update)


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class SocketServer:
    """Serves RPC requests on the home's socket, one request per connection."""

    def __init__(self, path: Path, dispatch: Dispatch) -> None:
        self.path = path
        self._dispatch = dispatch
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        ensure_private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=os.fspath(self.path), limit=rpc.MAX_LINE
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _peer_uid(writer) != os.getuid():
                log.warning("refused a socket connection from another user")
                writer.write(
                    rpc.encode(rpc.error("forbidden", "only the owner may use this daemon."))
                )
                return
            line = await reader.readline()
            if not line:
                return
            progress_sink.set(lambda update: writer.write(rpc.encode({"progress": update})))
            writer.write(rpc.encode(await self._answer(line)))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("client connection dropped: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = rpc.decode(line)
            method = request.get("method")
            params = request.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise rpc.RpcError("bad_request", "method must be a string, params an object.")
            return rpc.ok(await self._dispatch(method, params))
        except rpc.RpcError as exc:
            return rpc.error(exc.code, exc.message)
        except Exception:
            log.exception("request failed")
            return rpc.error("internal", "the daemon hit an internal error; see 'p2p daemon logs'.")
