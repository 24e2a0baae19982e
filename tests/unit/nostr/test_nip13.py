"""NIP-13: difficulty of known ids, and mining that meets its target."""

from __future__ import annotations

import nostr_sdk as ns
import pytest

from p2p_comm.nostr import kinds, nip13, nip17


@pytest.mark.parametrize(
    ("event_id", "bits"),
    [
        # The two examples in the NIP-13 text.
        ("000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d", 36),
        ("000006d8c378af1779d2feebc7603a125d99eca0ccf1085959b307f64e5dd358", 21),
        # "002f..." is 0000 0000 0010 1111: ten leading zeros.
        ("002f" + "f" * 60, 10),
        ("8" + "0" * 63, 0),
        ("7" + "f" * 63, 1),
        ("1" + "0" * 63, 3),
        ("0" * 63 + "1", 255),
        ("0" * 64, 256),
        ("00000000" + "F" * 56, 32),  # upper case hex is still hex
    ],
)
def test_difficulty_of_known_ids(event_id: str, bits: int) -> None:
    assert nip13.difficulty(event_id) == bits


@pytest.mark.parametrize(
    "junk",
    ["", "00", "0" * 65, "g" * 64, " " * 64, "0x" + "0" * 62, "0_" + "0" * 62, " " + "0" * 63],
)
def test_difficulty_refuses_what_is_not_an_id(junk: str) -> None:
    with pytest.raises(ValueError):
        nip13.difficulty(junk)


def test_committed_target() -> None:
    assert nip13.committed_target([["p", "x"], ["nonce", "776797", "20"]]) == 20
    assert nip13.committed_target([["nonce", "776797"]]) is None
    assert nip13.committed_target([["nonce", "1", "twenty"]]) is None
    assert nip13.committed_target([]) is None


@pytest.mark.parametrize("parallel", [False, True], ids=["one thread", "all cores"])
def test_mined_inbox_list_meets_its_target_and_keeps_its_fields(parallel: bool) -> None:
    keys = ns.Keys.generate()
    relays = ["wss://inbox.example.com", "wss://relay.example.org"]
    unsigned = nip17.inbox_relay_list(keys.public_key().to_hex(), relays, 1_795_000_000)
    event = nip13.mine(keys, unsigned, 12, parallel=parallel)
    assert event.verify()
    assert nip13.difficulty(event.id().to_hex()) >= 12
    tags = [tag.to_vec() for tag in event.tags()]
    assert nip13.committed_target(tags) == 12
    assert nip17.inbox_relays(tags) == relays
    assert event.kind().as_u16() == kinds.INBOX_RELAYS
    assert event.created_at().as_secs() == 1_795_000_000
    assert event.author().to_hex() == keys.public_key().to_hex()


def test_target_zero_only_signs_and_bad_targets_are_refused() -> None:
    keys = ns.Keys.generate()
    unsigned = nip17.inbox_relay_list(keys.public_key().to_hex(), ["wss://a.example"], 1)
    event = nip13.mine(keys, unsigned, 0)
    assert event.verify()
    assert nip13.committed_target([tag.to_vec() for tag in event.tags()]) is None
    for target in (-1, 256):
        with pytest.raises(ValueError):
            nip13.mine(keys, unsigned, target)
