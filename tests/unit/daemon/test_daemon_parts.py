"""The daemon's parts (calls, inbound, outbound, inbox, store) through the in-process seam:
real code paths, a fake relay network, no processes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from p2p_comm import clock
from p2p_comm.daemon.relays import catch_up
from p2p_comm.daemon.relays.inbound import Taken
from p2p_comm.daemon.relays.relay_events import to_inbound
from p2p_comm.protocol.call import ACTIVE
from tests.faults import junk_wrap

from .seam import FakeNetwork, SeamAgent, until


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def connected(tmp_path: Path, **config: Any) -> tuple[SeamAgent, SeamAgent, str]:
    network = FakeNetwork()
    alice = SeamAgent(tmp_path / "alice", network, **config)
    bob = SeamAgent(tmp_path / "bob", network, **config)
    for agent in (alice, bob):
        await agent.go_online()
    call, work = alice.actions.start_call(bob.identity.npub, "a topic", "alice")
    alice.calls.publish(work)
    await until(lambda: any(e["type"] == "call_request" for e in bob.inbox.unread()))
    request = bob.take()[0]
    bob_call = bob.calls.calls[request["call_id"]]
    bob.calls.publish(bob.actions.act(bob_call, bob_call.accept, ("call_accepted", {})))
    await until(lambda: call.state == ACTIVE)
    alice.take()
    return alice, bob, call.id


def send(agent: SeamAgent, call_id: str, text: str) -> None:
    call = agent.calls.calls[call_id]
    record = ("message", {"text": text})
    work = agent.actions.act(call, lambda now: call.send_text(text, now), record)
    agent.calls.publish(work)


def texts(agent: SeamAgent) -> list[str]:
    return [e["text"] for e in agent.take() if e["type"] == "message"]


def test_a_call_with_messages_both_ways(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        for i in range(3):
            send(alice, call_id, f"hello {i}")
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) == 3)
        assert got == ["hello 0", "hello 1", "hello 2"]
        await until(lambda: alice.calls.calls[call_id].unacked == 0)
        assert alice.outbound.delivery(alice.calls.calls[call_id])["delivered"] == 4
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_an_offline_peer_catches_up_past_the_relay_query_cap(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        await bob.go_offline()
        for i in range(700):
            send(alice, call_id, f"m{i}")
        await until(lambda: alice.outbound.delivery(alice.calls.calls[call_id])["queued"] == 0)
        await bob.go_online()  # the catch-up pages past the 500-event cap
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) >= 700, timeout=30)
        assert got == [f"m{i}" for i in range(700)]
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_batch_whose_transaction_fails_is_taken_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        real = bob.store.add_event
        failures = [1]

        def full_disk(*args: Any) -> int:
            if failures:
                failures.pop()
                raise OSError("database or disk is full")
            return real(*args)

        monkeypatch.setattr(bob.store, "add_event", full_disk)
        send(alice, call_id, "survives")
        await until(lambda: not failures)
        assert bob.inbox.unread() == [], "nothing recorded from the failed batch"
        assert bob.calls.calls[call_id].recv_next == 2, "memory went back to what was saved"
        await bob.inbound.catch_up()  # the wrap was not marked processed: it is found again
        assert texts(bob) == ["survives"]
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_out_of_order_chunks_survive_a_restart_of_the_receiver(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        await bob.go_offline()
        await alice.go_offline()  # no re-sends: only the first publications exist
        data = bytes(range(256)) * 150  # 38,400 bytes: 4 chunks
        digest = hashlib.sha256(data).hexdigest()
        call = alice.calls.calls[call_id]
        work = alice.actions.act(
            call, lambda now: call.send_file("f" * 32, "a.bin", data, digest, now), None
        )
        await asyncio.gather(*work)
        wraps = [e for e in bob.network.events if e.created_at and e.kind == 1059][-4:]
        items = bob.inbound.reader.unwrap_all(wraps)
        last_two = sorted(items, key=lambda t: t.order())[-2:]  # type: ignore[union-attr]
        bob.inbound.take(list(last_two))  # chunks 3 and 4 arrive before 1 and 2
        assert len(bob.calls.calls[call_id].reorder) == 2
        await bob.restart()  # the held chunks come back from the database, then the rest
        files: list[dict[str, Any]] = []
        await until(lambda: files.extend(e for e in bob.take() if e["type"] == "file") or files)
        assert Path(files[0]["path"]).read_bytes() == data
        await bob.go_offline()

    run(scenario())


def test_a_peer_over_its_byte_budget_is_deferred_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path, bytes_per_peer_per_minute=60_000)
        moment = [clock.now()]
        monkeypatch.setattr(clock, "now", lambda: moment[0])
        for i in range(30):
            send(alice, call_id, f"{i} " + "x" * 2000)  # ~6 KB wraps: well over 60 KB at once
        await until(lambda: bob.inbox.unread() != [])
        got: list[str] = texts(bob)
        assert 0 < len(got) < 30, "the budget held some back"
        for _ in range(10):  # each minute the budget refills, a catch-up takes some more
            moment[0] += 60
            await bob.inbound.catch_up()
            got += texts(bob)
        assert [t.split()[0] for t in got] == [str(i) for i in range(30)]
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_ratchet_message_over_budget_with_no_room_to_wait_is_read_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wraps over their sender's byte budget wait opened (`BudgetWait`), up to a total; past
    it one was dropped "for a catch-up". A ratchet message was read by then, its key spent:
    no catch-up or re-send could read it again (15 of 20 never arrived), and its call was
    left "being read" for good, its ratchet state never saved again. Now a ratchet seal
    with no room to wait is not read until there is. The waiting room is cut to 9 KB."""
    monkeypatch.setattr("p2p_comm.daemon.relays.budget.MAX_BYTES", 9_000)

    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path, bytes_per_peer_per_minute=10_000)
        assert alice.calls.calls[call_id].forward_secrecy
        moment = [clock.now()]
        monkeypatch.setattr(clock, "now", lambda: moment[0])
        for i in range(20):
            send(alice, call_id, f"{i} " + "x" * 2000)
        await until(lambda: bob.inbox.unread() != [])
        got: list[str] = texts(bob)
        for _ in range(20):  # each minute the budget refills, a catch-up takes some more
            moment[0] += 60
            await bob.inbound.catch_up()
            got += texts(bob)
        assert [t.split()[0] for t in got] == [str(i) for i in range(20)]
        assert bob.inbound.reader.reading == {}
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_wrap_taken_by_two_paths_is_handed_over_once(tmp_path: Path) -> None:
    """A catch-up unwraps a page as it arrives and takes it after its last page; the live
    path may take the same wrap in between. Call messages had a second guard (their seq),
    an owner's reply had none: it reached the agent twice."""

    async def scenario() -> None:
        bob = SeamAgent(tmp_path / "bob", FakeNetwork())
        bob.calls.owner = "ab" * 32
        reply = Taken("cd" * 32, bob.calls.owner, None, 0, "yes, go ahead")
        bob.inbound.take([reply])  # the live path
        bob.inbound.take([reply])  # the catch-up, which unwrapped it before
        assert [e["type"] for e in bob.take()] == ["owner_reply"]

    run(scenario())


def test_a_catch_up_that_fails_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction failing in a catch-up ended it, and nothing asked for another: what it
    had found waited for some later shed wrap or reconnection."""
    monkeypatch.setattr(catch_up, "CATCH_UP_DELAY", 0.05)

    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        await bob.go_offline()
        before = alice.pool.published
        for i in range(2):
            send(alice, call_id, f"while away {i}")
        await until(lambda: alice.pool.published >= before + 2)
        await alice.go_offline()  # no re-sends: only a catch-up can bring them
        real_take = bob.inbound.take
        failures: list[int] = []

        def failing_take(items: list[Any]) -> None:
            messages = [i for i in items if isinstance(i, Taken) and i.message is not None]
            if not failures and any(i.message.type == "message" for i in messages):
                failures.append(1)
                raise RuntimeError("disk I/O error")
            real_take(items)

        monkeypatch.setattr(bob.inbound, "take", failing_take)
        await bob.go_online(catch_up=False)
        assert await bob.inbound.catch_up() == 0  # it failed, and said so in the log
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) == 2)
        assert got == ["while away 0", "while away 1"]

    run(scenario())


def test_the_builder_connects_every_part(tmp_path: Path) -> None:
    """What app.py once set on the parts after making them, each now gets from the builder
    at construction (daemon/builder.py): the seam's agent is built the same way."""
    agent = SeamAgent(tmp_path / "agent", FakeNetwork())
    parts = agent.parts
    assert parts.inbound.sink is parts.calls.intake
    assert parts.calls.hooks is parts.groups and parts.groups.service is parts.calls
    assert parts.actions.service is parts.calls
    assert parts.owner.store is parts.store and parts.owner.inbox is parts.inbox
    assert parts.loops.my_name == parts.presence.name
    assert parts.calls.records.me == (parts.presence.name, agent.identity.npub)
    assert parts.calls.on_change is not None and parts.outbound.on_undeliverable is not None
    assert parts.inbox.waker is not None
    agent.store.close()


def test_a_caught_up_ratchet_message_too_far_ahead_waits_and_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up read (and so spent the key of) messages beyond the call's reorder window,
    behind one the relay had lost; `receive` dropped them for their order. No re-send could
    be read again, and the call never receipted past the gap (`make bench`, `memory`: 2,809
    such drops). Now they wait, read, until the gap fills. The window is cut to 50 here."""
    monkeypatch.setattr("p2p_comm.protocol.call.REORDER_WINDOW", 50)
    monkeypatch.setattr("p2p_comm.daemon.calls.call_intake.REORDER_WINDOW", 50)

    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        assert alice.calls.calls[call_id].forward_secrecy
        await bob.go_offline()
        before = len(bob.network.events)
        send(alice, call_id, "m0")
        await until(lambda: len(bob.network.events) > before)
        del bob.network.events[before:]  # the relay lost m0: only alice's re-send brings it
        for i in range(1, 120):
            send(alice, call_id, f"m{i}")
        await until(lambda: alice.outbound.delivery(alice.calls.calls[call_id])["queued"] == 0)
        await bob.go_online()
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) >= 120, timeout=30)
        assert got == [f"m{i}" for i in range(120)]
        await until(lambda: alice.calls.calls[call_id].unacked == 0, timeout=30)
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_an_outage_backlog_is_taken_before_the_older_history_is_paged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up took nothing before its last page: after an outage, the peer waited while
    it paged back through every wrap of the two-day lookback (in `make bench`, a call's
    earlier 10,000 messages and files: the catch-up of 5,000 went from 3.6 s alone to 14.4
    s). Now what came after the last complete catch-up is taken once paging passes it."""

    async def scenario() -> None:
        alice, bob, call_id = await connected(tmp_path)
        moment = [clock.now()]
        monkeypatch.setattr(clock, "now", lambda: moment[0])
        for i in range(1200):
            send(alice, call_id, f"old {i}")
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) >= 1200, timeout=30)
        moment[0] += 3600
        await bob.inbound.catch_up()  # complete: where the next one may take early
        await bob.go_offline()
        moment[0] += 3600
        for i in range(50):
            send(alice, call_id, f"new {i}")
        await until(lambda: alice.outbound.delivery(alice.calls.calls[call_id])["queued"] == 0)
        fetch = bob.pool.fetch_from
        had_them_at: list[int] = []

        async def counting(*args: Any, **kwargs: Any) -> Any:
            had_them_at.append(sum(1 for e in bob.inbox.unread() if e["type"] == "message"))
            return await fetch(*args, **kwargs)

        monkeypatch.setattr(bob.pool, "fetch_from", counting)
        await bob.go_online()
        assert len(had_them_at) >= 3, had_them_at  # 1,250 wraps: three pages and an empty one
        assert had_them_at[-1] == 50, had_them_at  # taken before the last pages were asked
        assert [t for t in texts(bob)] == [f"new {i}" for i in range(50)]
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_page_of_junk_met_before_ends_a_catch_up_without_opening_anything(
    tmp_path: Path,
) -> None:
    """A relay keeps a flood's junk: the first catch-up opens one page of it and stops
    there; each one after it reads that page again, finds it all known junk, and stops
    there too, opening nothing (a reworking of the catch-up that judged only what it opened
    paged one page further and opened 100 more wraps every time)."""

    async def scenario() -> None:
        network = FakeNetwork()
        bob = SeamAgent(tmp_path / "bob", network)
        bob_hex = bob.identity.public_hex
        network.events += [to_inbound(junk_wrap(bob_hex), "fake") for _ in range(1200)]
        await bob.go_online()  # its first catch-up
        stats = bob.inbound.stats
        assert (stats["catch_up_pages"], stats["unwrapped"]) == (1, catch_up.PAGE)
        for _ in range(3):
            await bob.inbound.catch_up()
        assert (stats["catch_up_pages"], stats["unwrapped"]) == (4, catch_up.PAGE)
        await bob.go_offline()

    run(scenario())
