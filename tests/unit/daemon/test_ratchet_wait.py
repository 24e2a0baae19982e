"""daemon/relays/ratchet_wait.py: with `require_forward_secrecy`, content on a roster
session waits, unpublished, until the session's ratchet can seal it; then it goes in order."""

from __future__ import annotations

from pathlib import Path

from p2p_comm.config import Config
from p2p_comm.daemon.relays.ratchet_wait import RatchetWait
from p2p_comm.daemon.relays.secrecy import Secrecy
from p2p_comm.protocol.call import Limits
from p2p_comm.protocol.group import member_session
from p2p_comm.protocol.wire import WireMessage
from p2p_comm.store import Store

LOW, HIGH = "1" * 64, "e" * 64  # the initiator has the lower key
GROUP = "ab" * 16


def _message(call_id: str, seq: int, kind: str = "message") -> WireMessage:
    if kind == "roster":
        return WireMessage(
            "roster", call_id, seq, 0, {"group": GROUP, "starter": HIGH, "roster": []}
        )
    return WireMessage(kind, call_id, seq, 0, {"text": f"secret {seq}", "part": 1, "parts": 1})


def test_content_waits_for_the_ratchet_and_goes_in_order_once_it_can(tmp_path: Path) -> None:
    stores = Store(tmp_path / "low.db"), Store(tmp_path / "high.db")
    low, high = Secrecy(stores[0], LOW), Secrecy(stores[1], HIGH)
    ours = member_session(GROUP, LOW, HIGH, "t", 0.0, Limits())
    theirs = member_session(GROUP, HIGH, LOW, "t", 0.0, Limits())
    assert ours.id == theirs.id and ours.in_band_keys
    wait = RatchetWait(Config(relays=("ws://x",), require_forward_secrecy=True), stores[0], low)

    def queue(message: WireMessage) -> bool:
        """What Outbound.queue does: seal if it can, else wait if it must."""
        sent = low.on_transmit(ours, message)
        with stores[0].transaction():
            if low.seal(ours, sent.encode(), 0) is None and wait.waits(ours, sent):
                wait.keep(ours, sent, sent.encode(), 0.0)
                return True
        return False

    greeting = low.on_transmit(ours, _message(ours.id, 1, "roster"))
    assert "ek" in greeting.body and not wait.waits(ours, greeting)  # carries the key
    assert queue(_message(ours.id, 2))  # no sending chain yet: it waits
    assert queue(_message(ours.id, 3, "roster"))  # behind a waiting one, a roster waits too
    assert stores[0].outbox_sealed(ours.id, 2) == (None, True)
    assert wait.release(ours) == []  # still no chain

    # The responder takes our key, answers under its ratchet; we read that answer.
    assert high.responded(theirs, greeting)
    with stores[1].transaction():
        answer = high.seal(theirs, _message(theirs.id, 1, "roster").encode(), 0)
    assert answer is not None
    low.open(ours.id, HIGH, answer, 1.0)
    with stores[0].transaction():
        released = wait.release(ours)
    assert [seq for seq, *_ in released] == [2, 3]
    assert [high.open(theirs.id, LOW, sealed, 2.0) for *_, sealed in released]
    assert stores[0].outbox_waiting() == [] and wait.calls == set()
    assert stores[0].outbox_sealed(ours.id, 2)[1] is False


def test_without_the_setting_nothing_waits(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    ours = member_session(GROUP, LOW, HIGH, "t", 0.0, Limits())
    wait = RatchetWait(Config(relays=("ws://x",)), store, Secrecy(store, LOW))
    assert not wait.waits(ours, _message(ours.id, 2))


def test_a_roster_queued_after_a_waiting_message_in_the_same_transaction_waits(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.db")
    secrecy = Secrecy(store, LOW)
    ours = member_session(GROUP, LOW, HIGH, "t", 0.0, Limits())
    secrecy.on_transmit(ours, _message(ours.id, 1, "roster"))
    wait = RatchetWait(Config(relays=("ws://x",), require_forward_secrecy=True), store, secrecy)
    with store.transaction():
        message = _message(ours.id, 2)
        assert wait.waits(ours, message)
        wait.keep(ours, message, message.encode(), 0.0)
        assert wait.waits(ours, _message(ours.id, 3, "roster"))  # before the commit too
