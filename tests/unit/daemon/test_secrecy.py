"""daemon/relays/secrecy.py: when a call's ratchet state is written, and reading in order."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from p2p_comm.daemon.relays.prekeys import Prekeys
from p2p_comm.daemon.relays.secrecy import Secrecy, header_n
from p2p_comm.nostr import nip59
from p2p_comm.protocol import ratchet
from p2p_comm.protocol.call import Call, Limits
from p2p_comm.protocol.wire import WireMessage
from p2p_comm.store import Store

ALICE, BOB = "a" * 64, "b" * 64


def _pair(tmp_path: Path) -> tuple[Secrecy, Secrecy, Call, Call, Store]:
    """Alice's and Bob's secrecy over one call, set up as the daemons do it."""
    stores = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    alice, bob = Secrecy(stores[0], ALICE), Secrecy(stores[1], BOB)
    caller, effects = Call.start("cd" * 16, BOB, "t", "alice", 0.0, Limits())
    request = alice.on_transmit(caller, effects[0].message)  # type: ignore[attr-defined]
    callee, _ = Call.ring_in(request, ALICE, 0.0, 0.0, Limits())
    accept = bob.on_transmit(callee, callee.accept(1.0)[0].message)  # type: ignore[attr-defined]
    caller.receive(accept, 1.0)
    alice.accepted(caller, accept)
    assert caller.forward_secrecy and callee.forward_secrecy
    return alice, bob, caller, callee, stores[1]


def _sealed(alice: Secrecy, caller: Call, count: int) -> list[str]:
    sealed = []
    for n in range(count):
        content = WireMessage(
            "message", caller.id, n + 2, 0, {"text": str(n), "part": 1, "parts": 1}
        )
        text = alice.seal(caller, content.encode(), 100)
        assert text is not None
        sealed.append(text)
    return sealed


def test_reading_far_ahead_is_refused_untouched_then_read_in_order(tmp_path: Path) -> None:
    alice, bob, caller, _, _ = _pair(tmp_path)
    sealed = _sealed(alice, caller, 100)
    assert [header_n(s) for s in sealed[:3]] == [0, 1, 2]
    before = bob.sessions[caller.id].to_dict()
    with pytest.raises(ratchet.TooFarAhead):
        bob.open(caller.id, ALICE, sealed[99], 100.0, max_skip=64)
    assert bob.sessions[caller.id].to_dict() == before
    for text in sorted(sealed, key=header_n):
        assert '"kind":25714' in bob.open(caller.id, ALICE, text, 100.0, max_skip=64)
    with pytest.raises(ratchet.MessageKeyGone):  # read once only
        bob.open(caller.id, ALICE, sealed[5], 100.0)


def test_a_state_with_reads_not_yet_taken_is_not_written(tmp_path: Path) -> None:
    """Written only once nothing it read waits to be taken: a crash must leave a state
    that reads those messages again."""
    alice, bob, caller, _, store = _pair(tmp_path)
    (sealed,) = _sealed(alice, caller, 1)
    saved = dict(store.ratchets())[caller.id]
    bob.open(caller.id, ALICE, sealed, 100.0)
    with store.transaction():
        bob.flush({caller.id})
    assert dict(store.ratchets())[caller.id] == saved
    with store.transaction():
        bob.flush(set())
    assert dict(store.ratchets())[caller.id]["nr"] == 1
    restarted = Secrecy(store, BOB)
    restarted.load()
    with pytest.raises(ratchet.MessageKeyGone):
        restarted.open(caller.id, ALICE, sealed, 100.0)


def test_the_end_erases_the_state_and_junk_is_refused(tmp_path: Path) -> None:
    alice, bob, caller, _, store = _pair(tmp_path)
    (sealed,) = _sealed(alice, caller, 1)
    with pytest.raises(ratchet.RatchetError):
        bob.open(caller.id, BOB, sealed, 100.0)  # not the peer's key
    with pytest.raises(ratchet.RatchetError):
        bob.open(caller.id, ALICE, "not base64!", 100.0)
    assert header_n("not base64!") == 0
    with store.transaction():
        bob.forget(caller.id)
    assert store.ratchets() == []
    with pytest.raises(ratchet.MessageKeyGone):
        bob.open(caller.id, ALICE, base64.b64encode(b"x" * 80).decode(), 100.0)


def _prekey_pair(tmp_path: Path) -> tuple[Secrecy, Secrecy, Call, WireMessage, str, Store]:
    stores = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    prekeys = Prekeys(stores[1])
    asyncio.run(prekeys.refresh(0.0))
    spk = prekeys.announce(0.0, 300.0)
    alice = Secrecy(stores[0], ALICE, peer_prekey=lambda peer: bytes.fromhex(spk))
    bob = Secrecy(stores[1], BOB, prekeys)
    caller, effects = Call.start("cd" * 16, BOB, "t", "alice", 0.0, Limits())
    request = alice.on_transmit(caller, effects[0].message)  # type: ignore[attr-defined]
    with stores[0].transaction():
        sealed = alice.seal(caller, request.encode(), 0)
    assert sealed is not None
    return alice, bob, caller, request, sealed, stores[1]


def test_a_request_to_our_prekey_sets_up_our_side_and_a_refused_one_leaves_no_key(
    tmp_path: Path,
) -> None:
    _, bob, caller, request, sealed, store = _prekey_pair(tmp_path)
    spk = request.body["spk"]
    assert spk == caller.prekey  # and the request itself went under the ratchet

    def read() -> str:
        opened = nip59.Sealed(ALICE, "", sealed, caller.id, spk)
        return bob.opener(1.0)(opened)

    assert '"topic\\":\\"t\\"' in read()
    with store.transaction():  # the request made no call (turned away)
        bob.flush(set(), {})
    assert caller.id not in bob.sessions and store.ratchets() == []

    assert '"topic\\":\\"t\\"' in read()  # read again later, and this time it rings
    callee, _ = Call.ring_in(request, ALICE, 0.0, 1.0, Limits())
    with store.transaction():
        bob.flush(set(), {callee.id: callee})
    assert [call_id for call_id, _ in store.ratchets()] == [callee.id]
    accept = bob.on_transmit(callee, callee.accept(2.0)[0].message)  # type: ignore[attr-defined]
    assert accept.body["ek"] == bob.sessions[callee.id].dhs_pub.hex()  # type: ignore[union-attr]


def test_a_send_while_a_read_message_waits_still_lets_a_crash_read_it_again(
    tmp_path: Path,
) -> None:
    """The crash window SECURITY.md described: bob read alice's message (its key now
    spent), it waits to be taken, bob sends in the call meanwhile (its state is written
    with the send), the daemon dies. Its re-send used to be taken as a duplicate: lost,
    and receipted."""
    alice, bob, caller, callee, store = _pair(tmp_path)
    (waiting,) = _sealed(alice, caller, 1)
    bob.open(caller.id, ALICE, waiting, 100.0)  # read; not taken (the call is busy)
    reply = WireMessage("message", callee.id, 2, 0, {"text": "hi", "part": 1, "parts": 1})
    with store.transaction():
        assert bob.seal(callee, reply.encode(), 100) is not None
        bob.flush({callee.id})
    restarted = Secrecy(store, BOB)  # the crash, before the message was taken
    restarted.load()
    assert '"kind":25714' in restarted.open(caller.id, ALICE, waiting, 200.0)

    # Taken, the key goes from the saved state too.
    with store.transaction():
        bob.flush(set())
    again = Secrecy(store, BOB)
    again.load()
    with pytest.raises(ratchet.MessageKeyGone):
        again.open(caller.id, ALICE, waiting, 300.0)


def test_a_prekey_session_waits_while_its_request_is_read_and_not_taken(tmp_path: Path) -> None:
    """A catch-up reads page by page and takes at the end; a batch taken in between flushed
    the session made from the request's prekey away, and the call, rung in later, set up
    another without the prekey: every ratchet message failed both ways (a review found it)."""
    _, bob, caller, request, sealed, store = _prekey_pair(tmp_path)
    bob.opener(1.0, calls={})(nip59.Sealed(ALICE, "", sealed, caller.id, request.body["spk"]))
    with store.transaction():
        bob.flush({caller.id}, {})  # read, not taken yet
    assert caller.id in bob.sessions
    callee, _ = Call.ring_in(request, ALICE, 0.0, 1.0, Limits())
    with store.transaction():
        bob.flush(set(), {callee.id: callee})  # taken: the call exists
    assert [call_id for call_id, _ in store.ratchets()] == [callee.id]


def test_a_seal_naming_our_prekey_sets_nothing_up_for_a_call_we_have(tmp_path: Path) -> None:
    """Anyone who knows a call's id (a group's session ids are computed from the roster)
    could plant a session of its own there with our public prekey, and the call's own set-up
    was then refused."""
    _, bob, caller, request, sealed, _ = _prekey_pair(tmp_path)
    existing, _ = Call.ring_in(request, ALICE, 0.0, 1.0, Limits())
    with pytest.raises(ratchet.MessageKeyGone):
        bob.opener(1.0, calls={existing.id: existing})(
            nip59.Sealed(ALICE, "", sealed, caller.id, request.body["spk"])
        )
    assert caller.id not in bob.sessions
