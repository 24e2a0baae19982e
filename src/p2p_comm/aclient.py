"""`AsyncClient`: the Python API as coroutines, over asyncio streams.

Same methods and results as the blocking `Client` (they share `client.Commands`). Several
coroutines may run at once (each request is its own connection), e.g. waiting on two calls in
parallel. Cancelling a ``wait`` closes its connection before any ``ack`` is sent, so the
events it would have returned stay unread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from . import rpc
from .client import Commands, P2PError, default_home, event_ids, for_python, launch
from .codes import REQUEST_TIMEOUT
from .locations import socket_path


class AsyncClient(Commands["Coroutine[Any, Any, dict[str, Any]]"]):
    """Asynchronous client of one agent's daemon; starts the daemon on first use if needed.

    Each method is a coroutine returning the command's result dict or raising `P2PError`.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, start: bool = True) -> None:
        self.home = os.path.abspath(os.fspath(home)) if home is not None else default_home()
        self.socket = socket_path(self.home)
        self.start = start
        self._launching: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"AsyncClient({self.home!r})"

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
        on_progress: rpc.ProgressCallback | None = None,
    ) -> Any:
        """One raw RPC, starting the daemon first if nothing answers."""
        try:
            try:
                return await _exchange(self.socket, method, params, timeout, on_progress)
            except rpc.DaemonUnavailable:
                if not self.start:
                    raise
            await self._launch()
            return await _exchange(self.socket, method, params, timeout, on_progress)
        except rpc.RpcError as exc:
            raise P2PError(exc.code, exc.message) from None

    async def _launch(self) -> None:
        # One start at a time: two coroutines finding no daemon must not race to start two.
        if self._launching is None:
            self._launching = asyncio.Lock()
        async with self._launching:
            try:
                await _exchange(self.socket, "ping", None, 2.0, None)
                return
            except rpc.RpcError:
                pass
            await asyncio.to_thread(launch, self.home)

    def _request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
        on_progress: rpc.ProgressCallback | None = None,
        ack: bool = False,
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        return self._consume(method, params, timeout, on_progress, ack)

    async def _consume(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float | None,
        on_progress: rpc.ProgressCallback | None,
        ack: bool,
    ) -> dict[str, Any]:
        result = await self.request(method, params, timeout, on_progress)
        for_python(result)
        ids = event_ids(result) if ack else []
        if ids:
            # Only after the events are in hand; a cancel before this point acks nothing.
            await self.request("ack", {"event_ids": ids})
        return result  # type: ignore[no-any-return]


async def _exchange(
    path: str,
    method: str,
    params: dict[str, Any] | None,
    timeout: float | None,
    on_progress: rpc.ProgressCallback | None,
) -> Any:
    """One request on its own connection, as `rpc.request` does it, with asyncio streams."""
    rpc.check_socket_safe(path)
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=rpc.MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError):
                raise rpc.DaemonUnavailable() from None
            try:
                writer.write(rpc.encode({"method": method, "params": params or {}}))
                await writer.drain()
                while True:
                    line = await reader.readline()
                    if not line.endswith(b"\n"):
                        raise rpc.RpcError(
                            "daemon_gone", "the daemon closed the connection without answering."
                        )
                    message = rpc.decode(line)
                    if "progress" not in message:
                        break
                    if on_progress is not None:
                        on_progress(message["progress"])
            finally:
                writer.close()
    except TimeoutError:
        raise rpc.RpcError("timeout", f"the daemon did not answer '{method}' in time.") from None
    except (BrokenPipeError, ConnectionResetError):
        raise rpc.RpcError("daemon_gone", "the daemon closed the connection.") from None
    except ValueError:  # a line over the stream limit
        raise rpc.RpcError("too_large", "the daemon's reply is too large.") from None
    if message.get("ok"):
        return message.get("result")
    err = message.get("error") or {}
    raise rpc.RpcError(str(err.get("code", "error")), str(err.get("message", "unknown error")))
