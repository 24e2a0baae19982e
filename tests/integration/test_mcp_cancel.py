"""Exactly once through MCP: `wait` calls the host cancels at random points while a peer
sends, with the official SDK's `Client` on the handshake (legacy) and the current protocol.

Hosts cancel a tool call whenever the user interrupts. A `wait` cancelled after 1.5 s, then
a peer message: the message was in the transcript but never reached `inbox`, `wait` or
`p2p://inbox` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from p2p_comm.harness import p2p_command

from .calls_helpers import connect, start_agents

ROUNDS = 100


class Agent:
    """What the agent has: the texts, and the cursor of the last result it received."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.cursor = 0  # nothing in hand yet

    async def take(self, client: Any, timeout: float) -> None:
        """One `wait` the documented way: `after` is the cursor of the last result in hand
        (the server then marks those events read); a result in hand is the agent's."""
        arguments = {"timeout": timeout, "after": self.cursor}
        result = await client.call_tool("wait", arguments)
        assert not result.is_error, result.content
        document = result.structured_content
        self.got.extend(e["text"] for e in document["events"] if e["type"] == "message")
        self.cursor = document["cursor"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_cancelled_waits_lose_and_repeat_nothing(relay: Any, make_agent: Any, mode: str) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    connect(alice, bob)
    command = p2p_command()
    params = StdioServerParameters(command=command[0], args=[*command[1:], "mcp"], env=alice.env)
    sent: list[str] = []
    agent = Agent()
    got = agent.got
    rng = random.Random(18)

    async def peer() -> None:
        for index in range(ROUNDS):
            text = f"round {index}"
            await asyncio.to_thread(bob.json, "send", text)
            sent.append(text)
            await asyncio.sleep(rng.uniform(0, 0.05))

    async def scenario() -> None:
        async with Client(params, mode=mode) as client:
            sender = asyncio.create_task(peer())
            while not sender.done():
                waiting = asyncio.create_task(agent.take(client, 5))
                await asyncio.sleep(rng.uniform(0, 0.08))
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
            await sender
            deadline = asyncio.get_running_loop().time() + 60
            while len(got) < len(sent) and asyncio.get_running_loop().time() < deadline:
                await agent.take(client, 2)
            await agent.take(client, 0)

    asyncio.run(asyncio.wait_for(scenario(), 240))
    assert sorted(got) == sorted(sent), (len(got), len(sent), set(sent) - set(got))
    assert len(got) == len(set(got)), "an event reached the agent twice"
