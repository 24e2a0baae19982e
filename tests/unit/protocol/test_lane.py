"""Call lanes (protocol/lane.py, docs/PROTOCOL.md 3.13): golden vectors and the sender's
counter."""

from __future__ import annotations

import hashlib
import hmac

import nostr_sdk as ns
import pytest

from p2p_comm.protocol import lane

G = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"  # secret key 1
G2 = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"  # secret key 2
ONE, TWO = (1).to_bytes(32, "big"), (2).to_bytes(32, "big")
X = bytes.fromhex(G2)  # the x of 1 * 2G = 2 * G: the shared secret of keys 1 and 2
CALL_A = "0123456789abcdef0123456789abcdef"
CALL_B = "ffeeddccbbaa99887766554433221100"

# (call, sender, period, index) between keys 1 and 2 -> (secret key, x-only public key),
# fixed once: a change to the construction breaks every peer's lanes, and must show here.
VECTORS = [
    (
        (CALL_A, G, 29_000_000, 0),
        "8e291408ac552622dfbfbdf46dcaf6ff518d7dab6ff186df92647aa35ebeae62",
        "2ecff36cb4c7c6e9aa6d797277375b642cf2bba9ce23c7349ef8013f791b9ee1",
    ),
    (
        (CALL_A, G, 29_000_000, 1),
        "cfaf7b5ee3bfca5debfdeb706bb8ddabe891501aa12b36abfac2f28bda7f300e",
        "dcea1a1ba4ce726cf24f82d6a58804f324ee4efd019ce5ee4232365dad02e31e",
    ),
    (
        (CALL_B, G2, 29_000_001, 1023),
        "a6dc036adad791ebfdc279a8c95506473ccd0e2b881e4ba218a2c5992780e854",
        "f72b1ce6c39db5f06d3ca2aabfa8eea5356ac83f40b628c40b74cd9498e52401",
    ),
]


def test_both_ends_share_the_ecdh_x_that_nip04_encrypts_with() -> None:
    assert lane.shared_x(ONE, G2) == lane.shared_x(TWO, G) == X
    # nostr-sdk's NIP-04 uses that same x as its AES key: what it encrypts, X decrypts.
    import base64

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    alice, bob = ns.Keys.generate(), ns.Keys.generate()
    shared = lane.shared_x(bytes.fromhex(alice.secret_key().to_hex()), bob.public_key().to_hex())
    text, iv = ns.nip04_encrypt(alice.secret_key(), bob.public_key(), "lanes").split("?iv=")
    decryptor = Cipher(algorithms.AES(shared), modes.CBC(base64.b64decode(iv))).decryptor()
    assert (decryptor.update(base64.b64decode(text)) + decryptor.finalize())[:5] == b"lanes"


@pytest.mark.parametrize(("inputs", "secret", "public"), VECTORS)
def test_lane_keys_match_the_vectors_and_the_document(
    inputs: tuple[str, str, int, int], secret: str, public: str
) -> None:
    call, sender, period, index = inputs
    assert lane.lane_secret(X, call, sender, period, index) == bytes.fromhex(secret)
    # PROTOCOL.md 3.13, written out: HMAC-SHA256 keyed with the label and X.
    data = call.encode() + bytes.fromhex(sender) + period.to_bytes(8, "big")
    data += index.to_bytes(4, "big")
    by_hand = hmac.new(b"p2p-comm lane v1" + X, data, hashlib.sha256).hexdigest()
    assert by_hand == secret
    assert ns.Keys(ns.SecretKey.from_bytes(bytes.fromhex(secret))).public_key().to_hex() == public


def test_keys_differ_by_call_sender_period_and_index() -> None:
    keys = {
        lane.lane_secret(shared, call, sender, period, index)
        for shared in (X, bytes(32))
        for call in (CALL_A, CALL_B)
        for sender in (G, G2)
        for period in (1, 2)
        for index in (0, 1)
    }
    assert len(keys) == 32


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


def test_the_counter_never_numbers_a_period_again_when_the_clock_is_set_back() -> None:
    counter = lane.LaneCounter(started=0)
    assert counter.take("a", 101 * 60) == (101, 0)
    assert counter.take("a", 100 * 60) is None  # set back a minute: a fresh key
    assert counter.take("a", 101 * 60 + 1) == (101, 1)


def test_the_counter_stops_at_the_periods_cap() -> None:
    counter = lane.LaneCounter(started=0)
    now = 60.0
    taken = [counter.take("a", now) for _ in range(lane.PER_MINUTE + 2)]
    assert taken[lane.PER_MINUTE - 1] == (1, lane.PER_MINUTE - 1)
    assert taken[lane.PER_MINUTE :] == [None, None]
