import json

from p2p_comm.protocol.presence import (
    PRESENCE_D_TAG,
    PeerPresence,
    Presence,
    decode_inbox_relays,
    decode_presence,
    encode_presence,
    inbox_relay_tags,
)

PUB = "ab" * 32


def roundtrip(presence: Presence, expires: int = 2000) -> PeerPresence:
    content, tags = encode_presence(presence, expires)
    decoded = decode_presence(PUB, 1000, content, tags)
    assert decoded is not None
    return decoded


def test_encode_decode_roundtrip() -> None:
    presence = Presence(
        name="bob",
        description="summarises",
        capabilities=("summarize", "code"),
        status="busy",
        relays=("wss://r.example",),
    )
    decoded = roundtrip(presence)
    assert decoded.presence == presence
    assert decoded.expires_at == 2000
    assert decoded.created_at == 1000


def test_tags_carry_d_t_and_expiration() -> None:
    _, tags = encode_presence(Presence(name="x"), 1234)
    assert ["d", PRESENCE_D_TAG] in tags
    assert ["t", "p2p-comm"] in tags
    assert ["expiration", "1234"] in tags


def test_liveness_by_age_expiration_and_status() -> None:
    peer = roundtrip(Presence(name="x"), expires=1200)
    assert peer.is_live(now=1100, window=300)
    assert not peer.is_live(now=1200, window=300), "expired"
    assert not peer.is_live(now=1100, window=50), "older than the window"
    offline = roundtrip(Presence(name="x", status="offline"))
    assert not offline.is_live(now=1001, window=300)


def test_a_presence_from_the_future_is_not_live() -> None:
    import dataclasses

    from p2p_comm.protocol.presence import CLOCK_TOLERANCE

    year = 365 * 86400
    ahead = roundtrip(Presence(name="x"), expires=1000 + year)
    for now in (1000 - year, 1000 - CLOCK_TOLERANCE - 1):
        taken = dataclasses.replace(ahead, received_at=now)
        assert taken.from_the_future(now) and not taken.is_live(now, window=300)
    # Clocks a few minutes apart are skew, not the future: judged by our own clock.
    skewed = dataclasses.replace(roundtrip(Presence(name="x")), received_at=800.0)
    assert not skewed.from_the_future(800.0) and skewed.is_live(now=900.0, window=300)


def test_not_presence_or_malformed_is_none() -> None:
    good_content, tags = encode_presence(Presence(name="x"), 10)
    assert decode_presence(PUB, 1, good_content, [["d", "other"]]) is None
    assert decode_presence(PUB, 1, "not json", tags) is None
    assert decode_presence(PUB, 1, "[1,2]", tags) is None
    assert decode_presence(PUB, 1, json.dumps({"name": 5}), tags) is None
    assert decode_presence(PUB, 1, json.dumps({"name": "\x1b[2J"}), tags) is None
    assert decode_presence(PUB, 1, json.dumps({"name": "x" * 9000}), tags) is None


def test_hostile_fields_are_bounded_and_cleaned() -> None:
    content = json.dumps(
        {
            "name": "evil\x1b[31m\u202ename" + "n" * 200,
            "capabilities": ["ok", 5, "x" * 100] + ["c"] * 100,
            "relays": ["wss://fine", "http://nope", "wss://with space", 3] + ["wss://r"] * 40,
            "status": "root",
            "v": True,
        }
    )
    _, tags = encode_presence(Presence(name="x"), 10)
    peer = decode_presence(PUB, 1, content, tags)
    assert peer is not None
    assert peer.presence.name.startswith("evilname")
    assert len(peer.presence.name) == 64
    assert peer.presence.capabilities[0] == "ok"
    assert len(peer.presence.capabilities[1]) == 64
    assert len(peer.presence.capabilities) == 3
    assert peer.presence.relays == ("wss://fine", "wss://r")
    assert peer.presence.status == "available"
    assert peer.presence.protocol == 1


def test_inbox_relay_list() -> None:
    tags = inbox_relay_tags(("wss://a", "wss://b"))
    assert tags == [["relay", "wss://a"], ["relay", "wss://b"]]
    assert decode_inbox_relays([*tags, ["relay", "javascript:x"], ["p", "wss://c"]]) == (
        "wss://a",
        "wss://b",
    )


def test_the_feature_level_travels_in_presence_and_is_zero_when_absent() -> None:
    """`pv` in presence (level 5: a caller that requires forward secrecy rings only such
    peers); an older agent's presence has none, and junk there reads as none."""
    from p2p_comm.protocol.presence import Presence, decode_presence, encode_presence

    content, tags = encode_presence(Presence(name="new", feature_level=5), 2_000_000_000)
    decoded = decode_presence("ab" * 32, 1_900_000_000, content, tags)
    assert decoded is not None and decoded.presence.feature_level == 5
    content, tags = encode_presence(Presence(name="old"), 2_000_000_000)
    assert '"pv"' not in content
    decoded = decode_presence("ab" * 32, 1_900_000_000, content, tags)
    assert decoded is not None and decoded.presence.feature_level == 0
    for junk in ('"5"', "true", "-1", "10000"):
        hostile = content[:-1] + f',"pv":{junk}}}'
        decoded = decode_presence("ab" * 32, 1_900_000_000, hostile, tags)
        assert decoded is not None and decoded.presence.feature_level == 0
