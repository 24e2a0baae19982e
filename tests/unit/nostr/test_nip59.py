"""NIP-59 gift wraps against committed golden vectors and the NIP texts' own examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm.nostr import kinds, nip59

VECTORS = Path(__file__).parent / "vectors"
GOLDEN = json.loads((VECTORS / "gift_wraps.json").read_text())
EXAMPLES = json.loads((VECTORS / "nip_examples.json").read_text())


def _keys(name: str) -> ns.Keys:
    return ns.Keys.parse(GOLDEN["keys"][name]["secret"])


def _event(document: dict[str, Any]) -> ns.Event:
    return ns.Event.from_json(json.dumps(document))


def _expect(message: nip59.Unwrapped, expect: dict[str, Any]) -> None:
    got = {
        "sender": message.sender,
        "kind": message.kind,
        "content": message.content,
        "created_at": message.created_at,
        "rumor_id": message.rumor_id,
    }
    assert got == {**got, **expect}
    assert set(expect) <= set(got)


def test_golden_keys_are_what_they_say() -> None:
    for name in GOLDEN["keys"]:
        assert _keys(name).public_key().to_hex() == GOLDEN["keys"][name]["public"]


@pytest.mark.parametrize("case", GOLDEN["valid"], ids=lambda case: case["name"])
def test_golden_wrap_unwraps_to_exact_rumor(case: dict[str, Any]) -> None:
    message = nip59.unwrap(_keys("receiver"), _event(case["wrap"]))
    _expect(message, case["expect"])


def test_forged_seal_is_refused() -> None:
    # The rumor names the sender as author but the impostor signed the seal.
    with pytest.raises(nip59.UnwrapError, match="forged"):
        nip59.unwrap(_keys("receiver"), _event(GOLDEN["forged"]))


def test_wrap_for_someone_else_is_refused() -> None:
    event = _event(GOLDEN["for_bystander"])
    with pytest.raises(nip59.UnwrapError, match="not for us"):
        nip59.unwrap(_keys("receiver"), event)
    # ...though it is a genuine wrap: its addressee opens it.
    assert nip59.unwrap(_keys("bystander"), event).sender == GOLDEN["keys"]["sender"]["public"]


def test_rumor_with_a_false_id_is_refused() -> None:
    with pytest.raises(nip59.UnwrapError, match="rumor id"):
        nip59.unwrap(_keys("receiver"), _event(GOLDEN["bad_rumor_id"]))


def test_nip59_spec_example_unwraps() -> None:
    example = EXAMPLES["nip59"]
    message = nip59.unwrap(ns.Keys.parse(example["recipient_secret"]), _event(example["wrap"]))
    _expect(message, example["expect"])


@pytest.mark.parametrize(
    ("wrap", "key"), [("to_receiver", "receiver_nsec"), ("to_sender", "sender_nsec")]
)
def test_nip17_spec_example_unwraps(wrap: str, key: str) -> None:
    example = EXAMPLES["nip17"]
    message = nip59.unwrap(ns.Keys.parse(example[key]), _event(example[wrap]))
    _expect(message, example["expect"])


def _tampered(change: dict[str, Any]) -> dict[str, Any]:
    return {**GOLDEN["valid"][0]["wrap"], **change}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (_tampered({"content": "junk"}), "id or signature"),
        (
            _tampered({"created_at": GOLDEN["valid"][0]["wrap"]["created_at"] + 1}),
            "id or signature",
        ),
        (_tampered({"kind": 1}), "not a gift wrap"),
        (_tampered({"sig": "00" * 64}), "signature"),
    ],
    ids=["junk content", "moved timestamp", "wrong kind", "zero signature"],
)
def test_tampered_wraps_are_refused(document: dict[str, Any], reason: str) -> None:
    event = _event(document)  # the SDK's parser takes all of these; unwrap must refuse
    with pytest.raises(nip59.UnwrapError, match=reason):
        nip59.unwrap(_keys("receiver"), event)


def test_junk_in_a_validly_signed_wrap_is_refused() -> None:
    # Correctly signed by its one-time key and addressed to us, but not a NIP-44 payload.
    one_time = ns.Keys.generate()
    receiver = _keys("receiver").public_key()
    for content in ["", "hello", "AgAA", json.dumps({"kind": 13})]:
        event = (
            ns.EventBuilder(ns.Kind(kinds.GIFT_WRAP), content)
            .tags([ns.Tag.public_key(receiver)])
            .finalize(one_time)
        )
        with pytest.raises(nip59.UnwrapError):
            nip59.unwrap(_keys("receiver"), event)


def test_wrap_has_exact_timestamp_one_p_tag_and_a_fresh_key() -> None:
    sender, receiver = _keys("sender"), GOLDEN["keys"]["receiver"]["public"]
    rumor = nip59.make_rumor(sender.public_key().to_hex(), kinds.CALL, "x", 1_700_000_000)
    first = nip59.wrap(sender, receiver, rumor, 1_700_000_123)
    second = nip59.wrap(sender, receiver, rumor, 1_700_000_123)
    assert first.created_at().as_secs() == 1_700_000_123
    assert first.kind().as_u16() == kinds.GIFT_WRAP
    assert [tag.to_vec() for tag in first.tags()] == [["p", receiver]]
    assert first.verify()
    # A retransmit is a new event with a new one-time author, so relays forward it again.
    assert first.id().to_hex() != second.id().to_hex()
    authors = {first.author().to_hex(), second.author().to_hex(), sender.public_key().to_hex()}
    assert len(authors) == 3
    # The SDK's own unwrapping accepts ours; the rumor keeps its own time.
    gift = ns.UnwrappedGift.from_gift_wrap(_keys("receiver"), first)
    assert gift.sender().to_hex() == sender.public_key().to_hex()
    assert gift.rumor().created_at().as_secs() == 1_700_000_000


def test_wrap_refuses_a_rumor_by_another_author() -> None:
    rumor = nip59.make_rumor(GOLDEN["keys"]["impostor"]["public"], kinds.CALL, "x", 1)
    with pytest.raises(ValueError, match="author"):
        nip59.wrap(_keys("sender"), GOLDEN["keys"]["receiver"]["public"], rumor, 1)


def test_stored_rumor_rewraps_to_the_same_rumor() -> None:
    sender = _keys("sender")
    rumor = nip59.make_rumor(
        sender.public_key().to_hex(), kinds.CALL, '{"a":"\\u2028 é"}', 1_795_000_000, [["t", "x"]]
    )
    stored = nip59.rumor_to_json(rumor)
    assert json.loads(stored)["id"] == rumor.id
    # The SDK reads our rumor and computes the same id.
    assert ns.UnsignedEvent.from_json(stored).ensure_id().id().to_hex() == rumor.id
    again = nip59.rumor_from_json(stored)
    event = nip59.wrap(sender, GOLDEN["keys"]["receiver"]["public"], again, 1_795_000_500)
    message = nip59.unwrap(_keys("receiver"), event)
    assert (message.rumor_id, message.content, message.created_at) == (
        rumor.id,
        '{"a":"\\u2028 é"}',
        1_795_000_000,
    )


@pytest.mark.parametrize("text", ["", "[]", "{}", "not json", '{"kind": 14}'])
def test_rumor_from_junk_json_raises(text: str) -> None:
    with pytest.raises(ValueError):
        nip59.rumor_from_json(text)


def test_rumor_from_json_checks_the_id() -> None:
    stored = json.loads(
        nip59.rumor_to_json(nip59.make_rumor(GOLDEN["keys"]["sender"]["public"], 14, "x", 5))
    )
    stored["content"] = "y"
    with pytest.raises(ValueError, match="id"):
        nip59.rumor_from_json(json.dumps(stored))


def test_wrap_timestamp_stays_within_the_jitter() -> None:
    now = 1_795_000_000.9
    seen = {nip59.wrap_timestamp(now) for _ in range(2000)}
    assert min(seen) >= 1_795_000_000 - nip59.WRAP_JITTER
    assert max(seen) <= 1_795_000_000
    assert len(seen) > 500  # random, not a constant offset
