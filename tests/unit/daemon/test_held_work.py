"""Work a command hands over (its publications) starts once its answer is written (issue 20):
the client has its answer before the daemon wraps and publishes, and nothing is dropped."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from p2p_comm import rpc
from p2p_comm.daemon.agent.server import SocketServer
from p2p_comm.daemon.base.answers import when_answered


def _request(path: Path, method: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.sendall(rpc.encode({"method": method, "params": {}}))
    client.setblocking(False)
    return client


def _has_answer(client: socket.socket) -> bool:
    try:
        return bool(client.recv(65536, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_held_work_starts_after_the_answer_is_written(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []
    clients: list[socket.socket] = []

    async def dispatch(method: str, params: dict[str, Any]) -> Any:
        if method == "spawns":  # a task the handler starts is not the handler: at once
            task = asyncio.ensure_future(asyncio.sleep(0))
            task.add_done_callback(
                lambda _: when_answered(lambda: seen.append(("from a task", None)))
            )
            await task
            await asyncio.sleep(0)
        when_answered(lambda: seen.append((method, _has_answer(clients[-1]))))
        seen.append(("handler done", method))
        if method == "fails":
            raise RuntimeError("after handing over its work")
        return {"fine": True}

    async def main() -> None:
        path = tmp_path / "s.sock"
        server = SocketServer(path, dispatch)
        await server.start()
        try:
            for method in ("sends", "fails", "spawns"):
                clients.append(await asyncio.to_thread(_request, path, method))
                for _ in range(200):
                    if any(name == method for name, _ in seen):
                        break
                    await asyncio.sleep(0.01)
        finally:
            await server.stop()
            for client in clients:
                client.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == [
        ("handler done", "sends"),
        ("sends", True),  # started after the answer was on the client's socket
        ("handler done", "fails"),
        ("fails", True),  # an error answer too, and the work is not dropped
        ("from a task", None),
        ("handler done", "spawns"),
        ("spawns", True),
    ]


def test_outside_a_request_work_starts_at_once() -> None:
    started: list[int] = []
    when_answered(lambda: started.append(1))

    async def in_a_task() -> None:
        when_answered(lambda: started.append(2))

    asyncio.run(in_a_task())
    assert started == [1, 2]
