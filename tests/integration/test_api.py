"""The Python API (`p2p_comm.Client`, `AsyncClient`) drives real calls with real daemons."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
import time
from typing import Any

import pytest

from p2p_comm import AsyncClient, Client, P2PError
from p2p_comm.harness import wait_until

from .calls_helpers import connect, events_of, start_agents


def wait_for(api: Client, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    """The first event of ``kind`` through `Client.wait`; others read meanwhile are dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in api.wait(timeout=2)["events"]:
            if event["type"] == kind:
                return event
    raise TimeoutError(f"no {kind} event in {timeout}s")


def test_python_api_drives_a_whole_call(relay: Any, make_agent: Any) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    api = Client(alice.home)
    assert api.whoami()["npub"] == alice.npub()
    assert "bob" in {agent["name"] for agent in api.list_agents()["agents"]}

    call_id = api.call("bob", "translate a contract")["call_id"]
    (request,) = events_of(bob, "call_request")
    assert request["call_id"] == call_id
    bob.json("answer", "accept")
    assert wait_for(api, "call_accepted")["call_id"] == call_id

    api.send("hello bob")
    assert events_of(bob, "message")[0]["text"] == "hello bob"
    bob.json("send", "hello alice")
    reply = wait_for(api, "message")
    assert reply["text"] == "hello alice"
    # Returned once, consumed once: the same event is not offered again.
    assert api.inbox()["events"] == []

    content = b"\x00binary\xffcontent" * 100
    sent = api.send_file(data=content, name="data.bin")
    assert sent["bytes"] == len(content)
    (received,) = events_of(bob, "file")
    assert received["sha256"] == hashlib.sha256(content).hexdigest()

    outcome = api.escalate("a human must approve the price")
    assert outcome["peer_notified"]
    assert events_of(bob, "escalation")[0]["text"] == "a human must approve the price"

    ended = api.end("thanks")
    assert "hello alice" in ended["transcript"]
    events_of(bob, "call_ended")
    transcript = api.transcript(call_id)
    assert "hello bob" in transcript["transcript"] and "data.bin" in transcript["transcript"]
    assert api.history()["calls"][0]["call_id"] == call_id

    with pytest.raises(P2PError) as failure:
        api.send("nobody listens")
    assert failure.value.code and "call" in failure.value.message
    assert not failure.value.unreachable


def test_errors_are_one_type_with_code_and_message(tmp_path: Any) -> None:
    api = Client(tmp_path / "nobody", start=False)
    with pytest.raises(P2PError) as failure:
        api.status()
    assert failure.value.code == "daemon_unavailable" and failure.value.unreachable
    for bad in (float("nan"), float("inf"), -1):
        with pytest.raises(P2PError, match="timeout"):
            api.wait(timeout=bad)
    with pytest.raises(P2PError, match="path or data"):
        api.send_file()


def test_importing_the_api_stays_light() -> None:
    code = (
        "import sys, p2p_comm.client, p2p_comm; p2p_comm.Client; "
        "print(' '.join(m for m in ('asyncio', 'typing', 'nostr_sdk', 'mcp') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_async_client_waits_on_two_calls_at_once(relay: Any, make_agent: Any) -> None:
    alice, bob, carol = start_agents(relay.url, make_agent, "alice", "bob", "carol")
    to_bob = connect(alice, bob, "first")
    to_carol = connect(alice, carol, "second")

    async def scenario() -> list[dict[str, Any]]:
        api = AsyncClient(alice.home)
        waits = [
            asyncio.create_task(api.wait(timeout=20, call_id=to_bob[:8])),
            asyncio.create_task(api.wait(timeout=20, call_id=to_carol[:8])),
        ]
        # Both waits are blocked in the daemon before either peer speaks.
        while (await api.status())["calls"]["waiting_clients"] < 2:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(carol.json, "send", "from carol")
        await asyncio.to_thread(bob.json, "send", "from bob")
        return list(await asyncio.gather(*waits))

    from_bob, from_carol = asyncio.run(asyncio.wait_for(scenario(), 40))
    assert [e["text"] for e in from_bob["events"] if e["type"] == "message"] == ["from bob"]
    assert [e["text"] for e in from_carol["events"] if e["type"] == "message"] == ["from carol"]
    assert Client(alice.home).inbox()["events"] == []


def test_a_cancelled_wait_loses_nothing(relay: Any, make_agent: Any) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    connect(alice, bob)
    api = AsyncClient(alice.home)

    async def cancelled_wait() -> None:
        task = asyncio.create_task(api.wait(timeout=30))
        while (await api.status())["calls"]["waiting_clients"] < 1:
            await asyncio.sleep(0.05)
        # Cancelled while blocked in the daemon; the message arrives only afterwards, while
        # the daemon may still be serving the abandoned wait.
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(bob.json, "send", "do not lose me")

    asyncio.run(asyncio.wait_for(cancelled_wait(), 30))
    inbox = Client(alice.home)
    got = wait_until(lambda: inbox.inbox()["events"], 20, "the message in the inbox")
    assert [e.get("text") for e in got] == ["do not lose me"]
    assert inbox.inbox()["events"] == []


def test_send_file_from_a_path_names_it_after_the_file(
    relay: Any, make_agent: Any, tmp_path: Any
) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    connect(alice, bob)
    path = tmp_path / "report.txt"
    path.write_bytes(b"quarterly numbers\n")
    sent = Client(alice.home).send_file(path)
    assert sent["file_name"] == "report.txt"
    (received,) = events_of(bob, "file")
    assert received["file_name"] == "report.txt"
    as_base64 = base64.b64encode(b"tiny").decode()
    assert Client(alice.home).send_file(data=as_base64, name="t.bin")["bytes"] == 4
