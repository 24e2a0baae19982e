"""The string-passing speed-up must change speed only, never bytes."""

import os
import random

import nostr_sdk as ns

from p2p_comm import sdk_speedups


def test_patch_applies_and_round_trips_every_size() -> None:
    assert sdk_speedups.apply() is True
    assert sdk_speedups.apply() is True, "applying twice is harmless"
    sender, receiver = ns.Keys.generate(), ns.Keys.generate()
    rng = random.Random(7)
    for size in (0, 1, 15, 16, 17, 1000, 12_000):  # NIP-44 caps plaintext at 65,535 bytes
        text = "".join(rng.choices('aé€😀\n"\\', k=size))
        secret = ns.nip44_encrypt(
            sender.secret_key(), receiver.public_key(), text or "x", ns.Nip44Version.V2
        )
        assert ns.nip44_decrypt(receiver.secret_key(), sender.public_key(), secret) == (text or "x")
        rumor = ns.EventBuilder(ns.Kind(25714), text).finalize_unsigned(sender.public_key())
        wrap = ns.nip59_make_gift_wrap(sender, receiver.public_key(), rumor)
        again = ns.Event.from_json(wrap.as_json())
        gift = ns.UnwrappedGift.from_gift_wrap(receiver, again)
        assert gift.rumor().content() == text
        assert gift.sender().to_hex() == sender.public_key().to_hex()


def test_binary_content_survives() -> None:
    sdk_speedups.apply()
    blob = os.urandom(3000).hex()
    event = ns.EventBuilder(ns.Kind(1), blob).finalize(ns.Keys.generate())
    assert ns.Event.from_json(event.as_json()).content() == blob
