"""Call lanes (protocol/lane.py, docs/PROTOCOL.md 3.13): golden vectors and the sender's
counter."""

from __future__ import annotations

import hashlib
import hmac

import nostr_sdk as ns
import pytest

from p2p_comm.protocol import lane

G = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
G2 = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
CALL_A = "0123456789abcdef0123456789abcdef"
CALL_B = "ffeeddccbbaa99887766554433221100"

# (call, sender, period, index) -> (secret key, its x-only public key), fixed once: a
# change to the construction breaks every peer's lane, and must show here.
VECTORS = [
    (
        (CALL_A, G, 29_000_000, 0),
        "d263d2a67dae40c8acfb39cea3f1053eb6a43b72942093ab98f810b1573efb6d",
        "60e19b82fa89af9d45f0cb0616c0d5199ccb0c6587096ee2a3dbe24891d221f5",
    ),
    (
        (CALL_A, G, 29_000_000, 1),
        "b5efbad620fb301042da0b92efefd3b69b605fa695a1f523169c358ff4389353",
        "817cc0577c36f45fd4570f8710509db2f85af030be9df5096176332c23cba898",
    ),
    (
        (CALL_B, G2, 29_000_001, 1023),
        "6e6072ad1de86c9e5b3c75ebf88486ed9c0d77ea5b83ee6e1092b55741f3d0a5",
        "eb95344129090e292141019492bdd675479a84a37934d99a4ba40fb62e6b1e69",
    ),
]


@pytest.mark.parametrize(("inputs", "secret", "public"), VECTORS)
def test_lane_keys_match_the_vectors_and_the_document(
    inputs: tuple[str, str, int, int], secret: str, public: str
) -> None:
    call, sender, period, index = inputs
    assert lane.lane_secret(call, sender, period, index) == bytes.fromhex(secret)
    # PROTOCOL.md 3.13, written out: HMAC-SHA256, keyed with the label and the call id.
    data = bytes.fromhex(sender) + period.to_bytes(8, "big") + index.to_bytes(4, "big")
    by_hand = hmac.new(b"p2p-comm lane v1" + call.encode(), data, hashlib.sha256).hexdigest()
    assert by_hand == secret
    assert ns.Keys(ns.SecretKey.from_bytes(bytes.fromhex(secret))).public_key().to_hex() == public


def test_keys_differ_by_call_sender_period_and_index() -> None:
    keys = {
        lane.lane_secret(call, sender, period, index)
        for call in (CALL_A, CALL_B)
        for sender in (G, G2)
        for period in (1, 2)
        for index in (0, 1)
    }
    assert len(keys) == 16


def test_the_counter_numbers_each_calls_wraps_per_period_from_zero() -> None:
    counter = lane.LaneCounter(started=99)
    assert counter.take("a", 100 * 60 + 5) == (100, 0)
    assert counter.take("a", 100 * 60 + 6) == (100, 1)
    assert counter.take("b", 100 * 60 + 7) == (100, 0)
    assert counter.take("a", 101 * 60) == (101, 0)  # a new period starts again at 0


def test_the_counter_gives_no_lane_in_the_period_it_last_signed_in_before_a_restart() -> None:
    counter = lane.LaneCounter(started=100)
    assert counter.take("a", 100 * 60 + 59) is None  # its indices may have been used
    assert counter.take("a", 101 * 60) == (101, 0)


def test_the_counter_stops_at_the_periods_cap() -> None:
    counter = lane.LaneCounter(started=0)
    now = 60.0
    taken = [counter.take("a", now) for _ in range(lane.PER_MINUTE + 2)]
    assert taken[lane.PER_MINUTE - 1] == (1, lane.PER_MINUTE - 1)
    assert taken[lane.PER_MINUTE :] == [None, None]
