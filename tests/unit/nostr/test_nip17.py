"""NIP-17: our private messages are what a NIP-17 app expects; inbox relay lists."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nostr_sdk as ns
import pytest

from p2p_comm.nostr import kinds, nip17, nip59

EXAMPLES = json.loads((Path(__file__).parent / "vectors" / "nip_examples.json").read_text())


def test_private_message_reads_as_nip17_in_the_sdk() -> None:
    sender, owner = ns.Keys.generate(), ns.Keys.generate()
    owner_hex = owner.public_key().to_hex()
    now = 1_795_000_000.5
    event = nip17.private_message(sender, owner_hex, "Need a decision: ship?", now=now)
    assert event.kind().as_u16() == kinds.GIFT_WRAP
    assert [tag.to_vec() for tag in event.tags()] == [["p", owner_hex]]
    # Jittered by minutes, not backdated by days as the SDK's own NIP-17 helper does.
    assert now - nip59.WRAP_JITTER - 1 <= event.created_at().as_secs() <= now
    # The SDK (what NIP-17 apps built on rust-nostr run) opens it as a kind-14 DM.
    gift = ns.UnwrappedGift.from_gift_wrap(owner, event)
    rumor = gift.rumor()
    assert gift.sender().to_hex() == sender.public_key().to_hex()
    assert rumor.kind().as_u16() == kinds.PRIVATE_MESSAGE
    assert rumor.content() == "Need a decision: ship?"
    assert rumor.created_at().as_secs() == 1_795_000_000
    assert [tag.to_vec() for tag in rumor.tags()] == [["p", owner_hex]]
    message = nip59.unwrap(owner, event)
    assert nip17.classify(message) is nip17.RumorClass.PRIVATE_MESSAGE


def test_private_message_defaults_to_now() -> None:
    sender, owner = ns.Keys.generate(), ns.Keys.generate()
    before = int(time.time())
    message = nip59.unwrap(owner, nip17.private_message(sender, owner.public_key().to_hex(), "hi"))
    assert before <= message.created_at <= int(time.time())


def test_sdk_made_private_message_is_classified_as_one() -> None:
    sender, owner = ns.Keys.generate(), ns.Keys.generate()
    event = ns.nip17_make_private_msg(sender, owner.public_key(), "from an app")
    message = nip59.unwrap(owner, event)
    assert (nip17.classify(message), message.content) == (
        nip17.RumorClass.PRIVATE_MESSAGE,
        "from an app",
    )


def test_spec_example_is_a_private_message() -> None:
    example = EXAMPLES["nip17"]
    message = nip59.unwrap(
        ns.Keys.parse(example["receiver_nsec"]),
        ns.Event.from_json(json.dumps(example["to_receiver"])),
    )
    assert nip17.classify(message) is nip17.RumorClass.PRIVATE_MESSAGE


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (kinds.CALL, nip17.RumorClass.CALL),
        (kinds.PRIVATE_MESSAGE, nip17.RumorClass.PRIVATE_MESSAGE),
        (15, nip17.RumorClass.OTHER),  # NIP-17 file message
        (7, nip17.RumorClass.OTHER),
        (1, nip17.RumorClass.OTHER),
    ],
)
def test_classify(kind: int, expected: nip17.RumorClass) -> None:
    message = nip59.Unwrapped(
        sender="a" * 64, kind=kind, content="", created_at=0, rumor_id="b" * 64
    )
    assert nip17.classify(message) is expected


def test_inbox_relay_list_round_trips_through_the_sdk() -> None:
    keys = ns.Keys.generate()
    relays = ["wss://inbox.example.com", "wss://auth.example.org/inbox"]
    event = nip17.inbox_relay_list(keys.public_key().to_hex(), relays, 1_795_000_000).sign(keys)
    assert event.kind().as_u16() == kinds.INBOX_RELAYS
    assert nip17.inbox_relays(tag.to_vec() for tag in event.tags()) == relays
    assert [url.__str__() for url in ns.nip17_extract_relay_list(event)] == relays


def test_inbox_relays_from_junk_tags() -> None:
    tags = [
        ["relay", "wss://ok.example"],
        ["relay", "wss://ok.example"],  # duplicate
        ["relay", "https://not-a-relay.example"],
        ["relay", "javascript:alert(1)"],
        ["relay"],
        ["r", "wss://wrong-tag.example"],
        ["relay", "wss://" + "x" * 600],
        ["relay", " ws://spaced.example "],
        [],
    ]
    assert nip17.inbox_relays(tags) == ["wss://ok.example", "ws://spaced.example"]
