"""daemon/relays/lanes.py: the lane keys a sender signs with, and the ones a receiver expects
(docs/PROTOCOL.md 3.13)."""

from __future__ import annotations

from pathlib import Path

import nostr_sdk as ns

from p2p_comm.daemon.relays.lanes import LaneKeys, LaneWatch
from p2p_comm.protocol import lane
from p2p_comm.store import Store

ALICE_KEYS, BOB_KEYS = ns.Keys.generate(), ns.Keys.generate()
ALICE, BOB = ALICE_KEYS.public_key().to_hex(), BOB_KEYS.public_key().to_hex()
CALL = "0123456789abcdef0123456789abcdef"
T0 = 1_800_000_000.0  # a period's start (divisible by 60)


def _sender(tmp_path: Path, now: float, name: str = "state.db") -> LaneKeys:
    return LaneKeys(Store(tmp_path / name), ALICE_KEYS, now)


def _key_hex(keys: object) -> str:
    assert isinstance(keys, ns.Keys)
    return str(keys.public_key().to_hex())


class _Watch(LaneWatch):
    """A LaneWatch whose clock for refreshing is ours (no waiting a second between looks)."""

    def look(self, now: float) -> None:
        self._looked = -lane.MINUTE
        self.refresh(now)


def test_the_receiver_knows_each_senders_wrap_key_once_and_follows_it_along(
    tmp_path: Path,
) -> None:
    sender = _sender(tmp_path, T0)
    calls = [(CALL, ALICE)]
    watch = _Watch(BOB_KEYS, lambda: calls)
    assert watch.idle
    watch.look(T0)
    assert not watch.idle
    sent = [_key_hex(sender.key_for(CALL, BOB, T0 + 1)) for _ in range(3 * lane.WINDOW)]
    assert len(set(sent)) == len(sent)  # never one key twice
    # Every one is known, in order or not (the window moves on with each one seen)...
    for key in sent[1::2] + sent[0::2]:
        assert watch.expects(key), key
    # ... and each only once: a second wrap with a key is nothing special.
    assert not watch.expects(sent[0])
    assert watch.recognised == len(sent)
    # A key from another call, or a fresh one, is not known.
    other = _sender(tmp_path, T0, "other.db").key_for("f" * 32, BOB, T0 + 1)
    assert not watch.expects(_key_hex(other))
    # Nor is the key alice would use for the same call with someone else.
    carol = ns.Keys.generate().public_key().to_hex()
    elsewhere = _sender(tmp_path, T0, "carol.db").key_for(CALL, carol, T0 + 1)
    assert not watch.expects(_key_hex(elsewhere))
    assert not watch.expects(ns.Keys.generate().public_key().to_hex())


def test_keys_a_minute_apart_are_known_and_an_ended_call_is_forgotten(tmp_path: Path) -> None:
    calls = [(CALL, ALICE)]
    watch = _Watch(BOB_KEYS, lambda: calls)
    watch.look(T0)
    early = _sender(tmp_path, T0 - 60).key_for(CALL, BOB, T0 - 59)  # a clock a minute behind
    assert watch.expects(_key_hex(early))
    calls.clear()  # the call ended
    watch.look(T0 + 1)
    assert watch.idle
    late = _sender(tmp_path, T0, "b.db").key_for(CALL, BOB, T0 + 2)
    assert not watch.expects(_key_hex(late))


def test_a_sender_restarted_within_a_period_it_signed_in_waits_for_the_next(
    tmp_path: Path,
) -> None:
    first = _sender(tmp_path, T0)
    used = _key_hex(first.key_for(CALL, BOB, T0 + 1))
    again = _sender(tmp_path, T0 + 30)  # the same home, restarted in the same minute
    assert again.key_for(CALL, BOB, T0 + 31) is None  # a fresh key: index 0 was used
    later = again.key_for(CALL, BOB, T0 + 61)
    assert later is not None and _key_hex(later) != used


def test_a_wrap_made_with_a_lane_key_is_signed_by_it_and_reads_as_any_wrap(
    tmp_path: Path,
) -> None:
    from p2p_comm.nostr import kinds, nip59

    me, bob = ns.Keys.generate(), ns.Keys.generate()
    one_time = LaneKeys(Store(tmp_path / "c.db"), me, T0).key_for(
        CALL, bob.public_key().to_hex(), T0 + 1
    )
    rumor = nip59.make_rumor(me.public_key().to_hex(), kinds.CALL, "hello", int(T0))
    event = nip59.wrap(me, bob.public_key().to_hex(), rumor, int(T0), one_time=one_time)
    assert event.author().to_hex() == _key_hex(one_time)
    opened = nip59.unwrap(bob, event)
    assert (opened.sender, opened.content) == (me.public_key().to_hex(), "hello")
