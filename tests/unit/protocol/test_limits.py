from p2p_comm.protocol.limits import InboundGate, InboundLimits, RingCounts, TokenBucket

NOTHING = RingCounts(stranger=False, ringing=0, open=0)


def test_token_bucket_refills_over_time() -> None:
    bucket = TokenBucket(rate=1.0, burst=3.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(1.0) and not bucket.allow(1.0)
    assert not bucket.allow(2.0, cost=5), "more than the burst is never allowed"


def test_call_requests_per_peer_per_minute() -> None:
    gate = InboundGate(InboundLimits(call_requests_per_peer_per_minute=3))
    results = [gate.admit_request("stranger", NOTHING, now=0.0) for _ in range(5)]
    assert results == [None, None, None, "peer_call_rate", "peer_call_rate"]
    assert gate.admit_request("someone-else", NOTHING, now=0.0) is None, "per peer"
    assert gate.admit_request("stranger", NOTHING, now=20.0) is None, "refilled after 20 s"
    assert gate.refused == {"peer_call_rate": 2}


def test_ringing_and_open_call_caps() -> None:
    gate = InboundGate(InboundLimits(max_ringing=2, max_open_calls=4))
    assert gate.admit_request("a", RingCounts(False, 2, 0), now=0) == "too_many_ringing"
    assert gate.admit_request("b", RingCounts(False, 0, 4), now=0) == "too_many_open_calls"
    assert gate.admit_request("c", RingCounts(False, 1, 3), now=0) is None


def test_strangers_ring_in_a_share_of_their_own_one_call_per_key() -> None:
    gate = InboundGate(InboundLimits(max_ringing=10))
    assert gate.stranger_ringing == 5
    full = RingCounts(stranger=True, ringing=5, open=5, ringing_strangers=5)
    assert gate.admit_request("fresh", full, now=0) == "too_many_ringing"
    again = RingCounts(stranger=True, ringing=1, open=1, ringing_strangers=1, ringing_from_peer=1)
    assert gate.admit_request("same", again, now=0) == "too_many_ringing"
    # A known caller counts neither: its own ringing and open calls only.
    assert gate.admit_request("contact", RingCounts(False, 0, 0), now=0) is None


def test_strangers_together_ring_at_a_bounded_pace() -> None:
    gate = InboundGate(InboundLimits())
    fresh = RingCounts(stranger=True, ringing=0, open=0)
    results = [gate.admit_request(f"key{i}", fresh, now=0.0) for i in range(12)]
    assert results.count(None) == 10 and results[-1] == "stranger_call_rate"
    assert gate.admit_request("contact", RingCounts(False, 0, 0), now=0.0) is None
    assert gate.admit_request("key99", fresh, now=3.0) is None, "20 a minute: one per 3 s"


def test_bytes_per_peer_per_minute() -> None:
    gate = InboundGate(InboundLimits(bytes_per_peer_per_minute=6000))
    assert gate.admit_bytes("p", 5000, now=0)
    assert not gate.admit_bytes("p", 5000, now=0)
    assert gate.admit_bytes("q", 5000, now=0)
    assert gate.admit_bytes("p", 5000, now=60)


def test_inbound_events_are_shed_over_the_rate() -> None:
    gate = InboundGate(InboundLimits(inbound_events_per_second=10))
    admitted = sum(gate.admit_wrap(100, now=0.0) for _ in range(100))
    assert admitted == 20 and gate.shed == 80, "burst of two seconds' worth, then shedding"
    assert gate.admit_wrap(100, now=1.0)


def test_oversized_wraps_are_refused_before_unwrapping() -> None:
    gate = InboundGate(InboundLimits(max_wrap_bytes=1000))
    assert not gate.admit_wrap(1001, now=0)
    assert gate.refused == {"oversized": 1}


def test_tracked_peers_are_bounded() -> None:
    gate = InboundGate(InboundLimits())
    for index in range(10_050):
        gate.admit_bytes(f"peer{index}", 1, now=0)
    assert len(gate._bytes) == 10_000


def test_recent_ids_forget_the_oldest_past_their_capacity() -> None:
    from p2p_comm.protocol.limits import RecentIds

    ids = RecentIds(3)
    for event_id in "abcd":
        ids.add(event_id)
    assert len(ids) == 3 and "a" not in ids and "d" in ids


def test_repeats_count_only_past_the_allowance_per_relay_and_window() -> None:
    from p2p_comm.protocol.limits import RepeatCounter

    counter = RepeatCounter(window=10.0, allowance=3)
    assert [counter.repeated("r1", "x", 0.0) for _ in range(5)] == [False] * 3 + [True] * 2
    assert not counter.repeated("r2", "x", 0.0), "another relay's copy is its own first"
    assert not counter.repeated("r1", "x", 11.0), "a new window starts the count again"
    bounded = RepeatCounter(window=10.0, allowance=1, max_ids=2)
    for event_id in ("a", "b", "c"):
        bounded.repeated("r", event_id, 0.0)
    assert not bounded.repeated("r", "a", 0.0), "past max_ids the window starts afresh"
