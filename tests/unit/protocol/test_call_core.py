"""The call state machine, driven by hand: no sockets, no clock."""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest

from p2p_comm.protocol.call import (
    ACTIVE,
    ENDED,
    FIRST_RETRY,
    RECEIPT_HOLD,
    RETRANSMIT_WINDOW,
    RETRY_AFTER_END,
    RINGING,
    STALE_MARGIN,
    Call,
    CallError,
    Direction,
    Limits,
)
from p2p_comm.protocol.events import (
    Acked,
    Deliver,
    Dropped,
    Effect,
    FileComplete,
    Retransmit,
    Transmit,
    WriteChunk,
)
from p2p_comm.protocol.wire import FILE_CHUNK_BYTES, TEXT_PART_BYTES, WireMessage, decode

CALL_ID = "ab" * 16
ALICE, BOB = "a" * 64, "b" * 64


def sent(effects: list[Effect]) -> list[WireMessage]:
    """Messages put on the wire, round-tripped through the codec like the real transport."""
    return [decode(e.message.encode()) for e in effects if isinstance(e, Transmit)]


def delivered(effects: list[Effect]) -> list[Deliver]:
    return [e for e in effects if isinstance(e, Deliver)]


def connected(limits: Limits | None = None) -> tuple[Call, Call]:
    limits = limits or Limits()
    caller, out = Call.start(CALL_ID, BOB, "topic", "alice", 0.0, limits)
    callee, _ = Call.ring_in(sent(out)[0], ALICE, 0.0, 0.1, limits)
    accept = sent(callee.accept(1.0))
    assert delivered(caller.receive(accept[0], 1.1)) == [Deliver("call_accepted", {})]
    return caller, callee


def exchange(sender: Call, receiver: Call, effects: list[Effect], now: float) -> list[Effect]:
    out: list[Effect] = []
    for message in sent(effects):
        out += receiver.receive(message, now)
    return out


def test_request_rings_with_topic() -> None:
    caller, out = Call.start(CALL_ID, BOB, "review my PR", "alice", 10.0, Limits())
    assert caller.state == RINGING
    (request,) = sent(out)
    assert (request.type, request.seq, request.body["topic"]) == ("request", 1, "review my PR")
    callee, effects = Call.ring_in(request, ALICE, 10.0, 10.5, Limits())
    assert callee.state == RINGING
    assert delivered(effects) == [Deliver("call_request", {"topic": "review my PR"})]


def test_accept_activates_both_sides_and_acknowledges_the_request() -> None:
    caller, callee = connected()
    assert caller.state == callee.state == ACTIVE
    assert caller.unacked == 0, "the accept carried the receipt for the request"
    assert callee.unacked == 1, "the accept itself is not yet receipted"
    ack = caller.take_ack()
    assert ack is not None and ack.ack == 1
    callee.receive(ack, 2.0)
    assert callee.unacked == 0


def test_reject_with_reason() -> None:
    caller, out = Call.start(CALL_ID, BOB, "t", "alice", 0.0, Limits())
    callee, _ = Call.ring_in(sent(out)[0], ALICE, 0.0, 0.0, Limits())
    effects = exchange(callee, caller, callee.reject("busy with another task", 1.0), 1.0)
    assert delivered(effects) == [Deliver("call_rejected", {"reason": "busy with another task"})]
    assert caller.state == callee.state == ENDED
    assert caller.outcome == callee.outcome == "rejected"


def test_ring_timeout_is_a_missed_call_on_both_sides() -> None:
    limits = Limits(ring_timeout=60)
    caller, out = Call.start(CALL_ID, BOB, "t", "alice", 0.0, limits)
    callee, _ = Call.ring_in(sent(out)[0], ALICE, 0.0, 1.0, limits)
    assert delivered(caller.tick(59.9)) == [] and caller.state == RINGING
    caller_effects = caller.tick(60.0)
    assert Deliver("call_missed", {"reason": "nobody answered"}) in caller_effects
    assert [m.type for m in sent(caller_effects)] == ["end"]
    # The callee times the ring by its own clock, from when the request reached it.
    assert delivered(callee.tick(60.5)) == []
    assert delivered(callee.tick(61.0)) == [Deliver("call_missed", {"reason": "the call rang out"})]
    assert caller.outcome == callee.outcome == "missed"
    with pytest.raises(CallError):
        callee.accept(61.0)


def test_a_replayed_request_long_past_its_ring_time_is_missed_at_once() -> None:
    _, out = Call.start(CALL_ID, BOB, "t", "alice", 0.0, Limits(ring_timeout=60))
    late = 60 + STALE_MARGIN + 1
    callee, effects = Call.ring_in(sent(out)[0], ALICE, 0.0, late, Limits(ring_timeout=60))
    assert [d.type for d in delivered(effects)] == ["call_request", "call_missed"]
    assert callee.state == ENDED


@pytest.mark.parametrize("skew", [-600.0, -120.0, 120.0, 600.0])
def test_a_caller_whose_clock_is_off_still_rings_for_the_whole_ring_time(skew: float) -> None:
    # The rumor's timestamp is the caller's clock: ``skew`` seconds off ours.
    _, out = Call.start(CALL_ID, BOB, "t", "alice", 1000.0 + skew, Limits(ring_timeout=60))
    callee, effects = Call.ring_in(
        sent(out)[0], ALICE, 1000.0 + skew, 1000.5, Limits(ring_timeout=60)
    )
    assert [d.type for d in delivered(effects)] == ["call_request"]
    assert delivered(callee.tick(1059.0)) == [] and callee.state == RINGING
    callee.accept(1059.0)
    assert callee.state == ACTIVE


def test_caller_hanging_up_while_ringing_is_a_missed_call_for_the_callee() -> None:
    caller, out = Call.start(CALL_ID, BOB, "t", "alice", 0.0, Limits())
    callee, _ = Call.ring_in(sent(out)[0], ALICE, 0.0, 0.0, Limits())
    effects = exchange(caller, callee, caller.end("never mind", 1.0), 1.0)
    assert delivered(effects) == [Deliver("call_missed", {"reason": "never mind"})]
    assert caller.outcome == "cancelled"


def test_messages_both_ways_and_end() -> None:
    caller, callee = connected()
    got = exchange(caller, callee, caller.send_text("hello", 2.0), 2.0)
    assert delivered(got) == [Deliver("message", {"text": "hello"})]
    got = exchange(callee, caller, callee.send_text("hi back", 3.0), 3.0)
    assert delivered(got) == [Deliver("message", {"text": "hi back"})]
    got = exchange(caller, callee, caller.end("done", 4.0), 4.0)
    assert delivered(got) == [Deliver("call_ended", {"reason": "done"})]
    assert caller.state == callee.state == ENDED
    with pytest.raises(CallError):
        caller.send_text("late", 5.0)


def test_long_message_is_split_and_joined() -> None:
    caller, callee = connected()
    text = "é" * (TEXT_PART_BYTES)  # 2 bytes each: two parts
    effects = caller.send_text(text, 2.0)
    assert len(sent(effects)) == 2
    assert delivered(exchange(caller, callee, effects, 2.0)) == [Deliver("message", {"text": text})]


def test_message_over_the_limit_is_refused_on_both_sides() -> None:
    caller, callee = connected(Limits(max_message_bytes=100))
    with pytest.raises(CallError, match="over the limit"):
        caller.send_text("x" * 101, 2.0)
    big = Call.from_dict(
        {**caller.to_dict(), "limits": {**caller.to_dict()["limits"], "max_message_bytes": 10**6}}
    )
    got = exchange(big, callee, big.send_text("y" * 101, 2.0), 2.0)
    assert delivered(got) == [] and any(isinstance(e, Dropped) for e in got)


def test_out_of_order_and_duplicates_deliver_once_in_order() -> None:
    caller, callee = connected()
    messages = sent([e for i in range(20) for e in caller.send_text(f"m{i}", 2.0)])
    shuffled = messages + messages[:7]
    random.Random(4).shuffle(shuffled)
    got: list[Effect] = []
    for message in shuffled:
        got += callee.receive(message, 3.0)
    assert [d.fields["text"] for d in delivered(got)] == [f"m{i}" for i in range(20)]
    ack = callee.take_ack()
    assert ack is not None and ack.ack == 21
    caller.receive(ack, 3.0)
    assert caller.unacked == 0


def test_duplicate_after_delivery_owes_a_fresh_receipt() -> None:
    caller, callee = connected()
    (message,) = sent(caller.send_text("once", 2.0))
    callee.receive(message, 2.0)
    callee.take_ack()
    assert callee.receive(message, 3.0) == []
    assert callee.take_ack() is not None


def test_unacknowledged_messages_are_retransmitted_with_backoff() -> None:
    caller, _ = connected()
    caller.take_ack()
    caller.send_text("lost", 10.0)
    seq = max(caller.pending)
    times = []
    now = 10.0
    while len(times) < 5:
        now += 0.5
        if any(e == Retransmit(seq) for e in caller.tick(now)):
            times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == pytest.approx(10.0 + FIRST_RETRY, abs=0.5)
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0], "backoff grows"
    caller.receive(WireMessage("ack", CALL_ID, 0, ack=seq), now)
    assert caller.tick(now + 1000) == []


def test_retransmits_continue_after_end_until_receipted_or_expired() -> None:
    caller, _ = connected()
    caller.end("bye", 10.0)
    assert any(isinstance(e, Retransmit) for e in caller.tick(10.0 + FIRST_RETRY))
    assert caller.tick(10.0 + RETRY_AFTER_END + 1) == []
    assert caller.next_deadline() is None


def _receive_file(data: bytes, limits: Limits | None = None) -> tuple[list[Effect], Call]:
    caller, callee = connected(limits)
    digest = hashlib.sha256(data).hexdigest()
    got = exchange(caller, callee, caller.send_file("f" * 32, "a.bin", data, digest, 2.0), 2.0)
    return got, callee


@pytest.mark.parametrize(
    "size",
    [0, 1, FILE_CHUNK_BYTES - 1, FILE_CHUNK_BYTES, FILE_CHUNK_BYTES + 1, 5 * FILE_CHUNK_BYTES + 7],
)
def test_file_chunks_reassemble(size: int) -> None:
    data = random.Random(size).randbytes(size)
    got, _ = _receive_file(data)
    writes = [e for e in got if isinstance(e, WriteChunk)]
    assert b"".join(w.data for w in sorted(writes, key=lambda w: w.offset)) == data
    (complete,) = [e for e in got if isinstance(e, FileComplete)]
    assert (complete.size, complete.sha256) == (size, hashlib.sha256(data).hexdigest())


def test_file_over_the_limit_is_refused_back_to_the_sender() -> None:
    caller, callee = connected(Limits(max_file_bytes=10))
    with pytest.raises(CallError):
        caller.send_file("f" * 32, "x", b"x" * 11, "0" * 64, 2.0)
    generous = Call.from_dict(
        {**caller.to_dict(), "limits": {**caller.to_dict()["limits"], "max_file_bytes": 100}}
    )
    data = b"x" * 11
    got = exchange(generous, callee, generous.send_file("f" * 32, "x", data, "0" * 64, 2.0), 2.0)
    assert not any(isinstance(e, WriteChunk | FileComplete) for e in got)
    # The refusal travels back: the sender's agent learns the file was not taken.
    back = exchange(callee, generous, got, 3.0)
    (refused,) = delivered(back)
    assert refused.type == "refused" and refused.fields["what"] == "file"
    assert refused.fields["file_name"] == "x" and "limit" in refused.fields["reason"]
    assert generous.refused == 1


def test_a_file_failing_its_hash_is_refused_back_to_the_sender() -> None:
    data = b"some bytes"
    got, callee = _receive_file(data)
    (complete,) = [e for e in got if isinstance(e, FileComplete)]
    refusal = callee.file_failed(complete.seq, complete.name, "the file failed its check", 3.0)
    (message,) = sent(refusal)
    assert (message.type, message.body["ref"], message.body["what"]) == (
        "refuse",
        complete.seq,
        "file",
    )


def test_message_before_the_answer_is_refused_not_delivered() -> None:
    _, out = Call.start(CALL_ID, BOB, "t", "alice", 0.0, Limits())
    callee, _ = Call.ring_in(sent(out)[0], ALICE, 0.0, 0.0, Limits())
    early = WireMessage("message", CALL_ID, 2, body={"text": "hi", "part": 1, "parts": 1})
    got = callee.receive(early, 1.0)
    assert delivered(got) == []
    assert [m.type for m in sent(got)] == ["refuse"]


def _refuse(ref: int, seq: int = 50) -> WireMessage:
    body = {"ref": ref, "what": "message", "name": "", "reason": "no"}
    return WireMessage("refuse", CALL_ID, seq, body=body)


def _refused_seqs(call: Call, refs: list[int]) -> list[int]:
    """Feed the call one `refuse` per ref (each in its own place in the peer's sequence)."""
    got: list[Effect] = []
    for ref in refs:
        got += call._on_refuse(_refuse(ref), 5.0)
    return [d.fields["ref_seq"] for d in delivered(got)]


def test_a_refuse_counts_only_once_and_only_for_a_message_file_or_escalation_we_sent() -> None:
    caller, callee = connected()
    assert callee.next_seq == 2  # seq 1 was the accept
    callee.send_text("two", 2.0)
    callee.send_file("f" * 32, "x", b"x" * 10, "0" * 64, 2.0)  # seq 3
    callee.send_roster({"group": "c" * 32, "starter": ALICE, "roster": [[ALICE, "a"]]}, 2.0)
    callee.escalate("five", 2.0)
    assert callee.refusable == [[2, 3], [5, 5]]
    refs = [0, 1, 2, 2, 3, 4, 5, 6, 99]
    assert _refused_seqs(callee, refs) == [2, 3, 5]
    assert callee.refused == 3 and callee.refusable == []
    # The caller sent only its request: nothing to refuse.
    assert _refused_seqs(caller, [1, 2]) == [] and caller.refused == 0


def test_what_may_be_refused_survives_a_restart_and_an_older_save() -> None:
    _, callee = connected()
    for text in ("a", "b", "c"):
        callee.send_text(text, 2.0)  # seqs 2, 3, 4
    assert _refused_seqs(callee, [3]) == [3]
    restored = Call.from_dict(callee.to_dict())
    assert restored.refusable == [[2, 2], [4, 4]]
    assert _refused_seqs(restored, [3, 4]) == [4]
    # A call saved before we kept track: any seq we sent, once.
    old = {k: v for k, v in callee.to_dict().items() if k != "refusable"}
    legacy = Call.from_dict(old)
    assert _refused_seqs(legacy, [0, 1, 4, 4, 5]) == [1, 4]


def test_a_version_1_peer_gets_no_refusal_it_could_not_parse() -> None:
    caller, callee = connected()
    callee.peer_level = 1
    too_big = WireMessage(
        "file",
        CALL_ID,
        caller.next_seq,
        body={
            "fid": "f" * 32,
            "name": "x",
            "size": 11 << 30,
            "sha256": "0" * 64,
            "index": 0,
            "count": 1 << 20,
            "data": b"",
        },
    )
    got = callee.receive(too_big, 2.0)
    assert sent(got) == [] and any(isinstance(e, Dropped) for e in got)


def test_receipts_are_effects_and_count_as_delivered() -> None:
    caller, callee = connected()
    out = caller.send_text("a", 2.0) + caller.send_text("b", 2.0)
    exchange(caller, callee, out, 2.0)
    ack = callee.take_ack()
    assert ack is not None
    got = caller.receive(ack, 2.1)
    (acked,) = [e for e in got if isinstance(e, Acked)]
    assert set(acked.seqs) == {2, 3} and caller.delivered == 3 and caller.unacked == 0


def test_only_a_window_of_the_oldest_unreceipted_messages_is_resent() -> None:
    caller, _ = connected()
    for i in range(RETRANSMIT_WINDOW + 50):
        caller.send_text(f"m{i}", 2.0)
    resent = [e.seq for e in caller.tick(100.0) if isinstance(e, Retransmit)]
    assert len(resent) == RETRANSMIT_WINDOW
    assert resent == sorted(caller.pending)[:RETRANSMIT_WINDOW]
    assert caller.next_deadline() == min(caller.pending[s].next_at for s in resent)


def test_forged_chunk_that_does_not_fit_is_dropped() -> None:
    caller, callee = connected()
    data = bytes(3 * FILE_CHUNK_BYTES)
    messages = sent(caller.send_file("f" * 32, "x", data, "0" * 64, 2.0))
    callee.receive(messages[0], 2.0)
    bad = WireMessage("file", CALL_ID, messages[1].seq, body={**messages[1].body, "size": 5})
    got = callee.receive(bad, 2.0)
    assert any(isinstance(e, Dropped) for e in got)
    assert not any(isinstance(e, FileComplete) for e in got)


def test_state_survives_a_round_trip_through_dict() -> None:
    caller, _callee = connected()
    caller.send_text("pending", 2.0)
    restored = Call.from_dict(caller.to_dict())
    assert restored.to_dict() == caller.to_dict()
    # The retransmit schedule lives in the shell's outbox, and is rebuilt from it.
    restored.restore_pending(sorted(caller.pending), 10.0)
    assert restored.pending.keys() == caller.pending.keys()
    assert restored.next_deadline() == 10.5


def test_local_actions_in_the_wrong_state_are_errors() -> None:
    caller, _ = Call.start(CALL_ID, BOB, "t", "alice", 0.0, Limits())
    with pytest.raises(CallError, match="not active"):
        caller.send_text("too early", 1.0)
    with pytest.raises(CallError, match="not ringing here"):
        caller.accept(1.0)


def test_nudge_brings_long_waiting_retries_forward_only() -> None:
    caller, _ = connected()
    caller.take_ack()
    caller.send_text("retried often", 10.0)
    old = max(caller.pending)
    caller.send_text("just sent", 10.0)
    fresh = max(caller.pending)
    caller.pending[old].attempts = 4
    caller.pending[old].next_at = 100.0
    assert caller.nudge(20.0) is True
    # Not at once: the peer gets RECEIPT_HOLD to start receipting what it fetches itself.
    assert caller.pending[old].next_at == 20.0 + RECEIPT_HOLD
    assert caller.pending[old].attempts == 1
    assert caller.pending[fresh].next_at == 10.0 + FIRST_RETRY, "fresh messages keep their time"
    assert caller.nudge(20.0) is False


def test_receipts_that_advance_hold_the_resends_of_the_rest() -> None:
    """A peer whose receipts advance is catching up: what it has not receipted yet is not
    re-sent until its receipts stall for RECEIPT_HOLD (issue 20)."""
    caller, _ = connected()
    caller.take_ack()
    for index in range(5):
        caller.send_text(f"backlog {index}", 10.0)
    first = min(caller.pending)
    overdue = 500.0  # long past every message's retry time
    caller.receive(WireMessage("ack", CALL_ID, 0, ack=first), overdue)
    assert all(p.next_at == overdue + RECEIPT_HOLD for p in caller.pending.values())
    assert not [e for e in caller.tick(overdue + 1.0) if isinstance(e, Retransmit)]
    # The same receipt again does not advance: it holds nothing, and the stall is re-sent.
    caller.receive(WireMessage("ack", CALL_ID, 0, ack=first), overdue + 3.0)
    resent = [e for e in caller.tick(overdue + RECEIPT_HOLD) if isinstance(e, Retransmit)]
    assert len(resent) == 4


def test_a_message_no_relay_took_is_not_held_by_advancing_receipts() -> None:
    """The peer cannot be fetching what no relay took: its re-send keeps its time."""
    caller, _ = connected()
    caller.take_ack()
    for index in range(3):
        caller.send_text(f"burst {index}", 10.0)
    first, lost, _ = sorted(caller.pending)
    caller.mark_published(lost, False)
    caller.receive(WireMessage("ack", CALL_ID, 0, ack=first), 11.0)
    assert caller.pending[lost].next_at == 10.0 + FIRST_RETRY
    resent = [e.seq for e in caller.tick(10.0 + FIRST_RETRY) if isinstance(e, Retransmit)]
    assert resent == [lost]


def _with_keys(effects: list[Effect]) -> list[WireMessage]:
    """Our request/accept as the daemon sends them at level 5: with an ephemeral key."""
    return [
        WireMessage(m.type, m.call, m.seq, m.ack, {**m.body, "ek": "ee" * 32})
        for m in sent(effects)
    ]


@pytest.mark.parametrize("keys", [True, False])
def test_forward_secrecy_is_agreed_by_both_keys_and_ends_resending(keys: bool) -> None:
    """A call has forward secrecy when the request and the accept both carry `ek` at level
    5; then the peer's `end` (it erased its ratchet) stops our re-sends, which it could no
    longer read. Without it, re-sends go on after the end as before (3.3)."""
    limits = Limits()
    pick = _with_keys if keys else sent
    caller, out = Call.start(CALL_ID, BOB, "topic", "alice", 0.0, limits)
    callee, _ = Call.ring_in(pick(out)[0], ALICE, 0.0, 0.1, limits)
    caller.receive(pick(callee.accept(1.0))[0], 1.1)
    assert (caller.forward_secrecy, callee.forward_secrecy) == (keys, keys)
    caller.send_text("in flight when the peer hangs up", 2.0)
    caller.receive(sent(callee.end("bye", 2.1))[0], 2.2)
    assert caller.state == ENDED
    assert (caller.unacked == 0) is keys


def test_a_roster_session_takes_plain_content_until_the_peers_first_ratchet_message() -> None:
    """A session made from a roster sets its ratchet up in band (PROTOCOL.md 3.12.8): what
    the peer sent before it had the ratchet is taken; after its first ratchet message,
    plain content is a downgrade. A call set up by request and accept refuses it always."""
    session = Call.answered_session(CALL_ID, BOB, Direction.INCOMING, "t", 1.0, Limits(), 5)
    assert not session.downgraded(3)  # no ratchet yet
    session.ratchet_started()
    assert not session.downgraded(3)  # ours, not yet the peer's
    session.ratchet_read(5)
    session.ratchet_read(7)
    assert session.peer_ratchet_from == 5
    assert not session.downgraded(4) and session.downgraded(6)
    restored = Call.from_dict(session.to_dict())
    assert restored.in_band_keys and restored.peer_ratchet_from == 5
    caller, _ = Call.start(CALL_ID, BOB, "t", "alice", 1.0, Limits())
    caller.ratchet_started()  # only a roster session sets it up in band
    assert not caller.forward_secrecy
    caller.forward_secrecy = True  # as an accept with `ek` makes it
    assert caller.downgraded(2)
