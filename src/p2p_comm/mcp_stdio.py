"""Standard input and output for the MCP server, read and written by the event loop.

The SDK's `stdio_server` reads each line and writes each answer through anyio's file
wrappers, a worker-thread round trip apiece: three thread hand-overs per tool call, most
of a `status` call's time through MCP. When fd 0 and fd 1 are pipes or sockets (as every
MCP host starts a server), they are served here by asyncio's pipe transports instead and
handed to `stdio_server` as its streams; otherwise (a regular file, a terminal on some
systems) the SDK's own wrappers serve them.

As `stdio_server` does with its own, the wire moves to private descriptors while we serve:
fd 0 reads the null device and fd 1 writes to stderr, so stray output cannot corrupt the
protocol; both are put back on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

# A line is one JSON-RPC message: a file sent as base64 through MCP can be megabytes long.
MAX_LINE = 64 * 1024 * 1024


def _streamable(fd: int) -> bool:
    """Whether asyncio can serve ``fd`` without a thread (a pipe, a socket)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Lines:
    """The async line iterator `stdio_server` reads requests from."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            line = await self.reader.readline()
            if not line:
                return
            yield line.decode("utf-8", errors="replace")


class _Writer:
    """The `write` and `flush` `stdio_server` answers with."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: Any) -> None:
        self.transport = transport
        self.writer = asyncio.StreamWriter(transport, protocol, None, asyncio.get_running_loop())

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


@contextlib.asynccontextmanager
async def pipe_streams() -> AsyncIterator[tuple[Any, Any] | None]:
    """(stdin lines, stdout writer) for `stdio_server(stdin, stdout)`, or None when fd 0
    or fd 1 is not a pipe or socket (then let the SDK serve them)."""
    if not (_streamable(0) and _streamable(1)):
        yield None
        return
    loop = asyncio.get_running_loop()
    saved = os.dup(0), os.dup(1)  # to put the wire back on fd 0 and fd 1 at the end
    wire_in, wire_out = os.dup(0), os.dup(1)  # the transports own (and close) these
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    transport: asyncio.BaseTransport | None = None
    source: asyncio.BaseTransport | None = None
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE)
        source, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", 0)
        )
        yield _Lines(reader), _Writer(transport, protocol)
    finally:
        for part in (transport, source):
            if part is not None:
                part.close()
        for fd, wire in enumerate(saved):
            with contextlib.suppress(OSError):
                os.dup2(wire, fd)
            os.close(wire)
