"""NIP-01 ids and events assembled in Python agree with the SDK's, byte for byte."""

from __future__ import annotations

import json

import nostr_sdk as ns
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_comm.nostr import nip01

KEYS = ns.Keys.parse("0" * 63 + "7")
ME = KEYS.public_key().to_hex()

# Everything a string can hold that UTF-8 can carry: control characters, quotes,
# backslashes, DEL, U+2028, emoji (non-BMP).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
TAGS = st.lists(st.lists(TEXT, min_size=1, max_size=3), max_size=3)


def _sdk_id(created_at: int, kind: int, tags: list[list[str]], content: str) -> str:
    computed: str = ns.EventId.compute(
        KEYS.public_key(),
        ns.Timestamp.from_secs(created_at),
        ns.Kind(kind),
        [ns.Tag.parse(tag) for tag in tags],
        content,
    ).to_hex()
    return computed


@settings(max_examples=300, deadline=None)
@given(content=TEXT, tags=TAGS, created_at=st.integers(0, 2**40), kind=st.integers(0, 65535))
def test_event_id_matches_the_sdk(
    content: str, tags: list[list[str]], created_at: int, kind: int
) -> None:
    assert nip01.event_id(ME, created_at, kind, tags, content) == _sdk_id(
        created_at, kind, tags, content
    )


@pytest.mark.parametrize(
    "content",
    ["", "plain", 'q"uote\\back', "\n\r\t\b\f\x00\x01\x1f\x7f", "\u2028\u2029 é 😀", "</script>"],
)
def test_signed_event_verifies_in_the_sdk(content: str) -> None:
    document = nip01.signed_json(KEYS, ME, 1_795_000_000, 1, [["p", ME], ["t", "x"]], content)
    event = ns.Event.from_json(document)
    assert event.verify()
    assert event.id().to_hex() == json.loads(document)["id"]
    assert event.content() == content
    assert [tag.to_vec() for tag in event.tags()] == [["p", ME], ["t", "x"]]


def test_nip01_serialisation_is_compact_utf8() -> None:
    raw = nip01.serialize(ME, 1, 14, [["p", ME]], 'é\n"')
    assert raw == f'[0,"{ME}",1,14,[["p","{ME}"]],"é\\n\\""]'.encode()


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        nip01.event_id(ME, 1, 1, [], "\ud800")


def _rumor(**change: object) -> str:
    fields: dict[str, object] = {
        "pubkey": ME,
        "created_at": 5,
        "kind": 14,
        "tags": [],
        "content": "x",
    }
    fields["id"] = nip01.event_id(ME, 5, 14, [], "x")
    fields.update(change)
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def test_parse_unsigned_takes_a_rumor_with_or_without_its_id() -> None:
    assert nip01.parse_unsigned(_rumor())["id"] == nip01.event_id(ME, 5, 14, [], "x")
    assert nip01.parse_unsigned(_rumor(id=None))["content"] == "x"
    upper = nip01.event_id(ME, 5, 14, [], "x").upper()
    assert nip01.parse_unsigned(_rumor(id=upper))["id"] == upper.lower()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "00" * 32}, "id does not match"),
        ({"id": 5}, "id does not match"),
        ({"pubkey": "npub1x"}, "pubkey"),
        ({"pubkey": ME.upper()}, "pubkey"),
        ({"created_at": "5"}, "created_at"),
        ({"created_at": True}, "created_at"),
        ({"kind": 70000}, "kind"),
        ({"content": None, "id": None}, "content"),
        ({"tags": [["p", 1]]}, "tags"),
        ({"tags": "p"}, "tags"),
    ],
)
def test_parse_unsigned_refuses_what_is_not_a_rumor(change: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        nip01.parse_unsigned(_rumor(**change))


@pytest.mark.parametrize("text", ["", "[]", "not json", "[" * 100_000, '"x"'])
def test_parse_unsigned_refuses_junk(text: str) -> None:
    with pytest.raises(ValueError):
        nip01.parse_unsigned(text)
