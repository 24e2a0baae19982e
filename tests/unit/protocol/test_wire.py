import base64
import json

import pytest

from p2p_comm.protocol.wire import (
    FILE_CHUNK_BYTES,
    WireError,
    WireMessage,
    chunk_count,
    decode,
    split_text,
)

CALL = "0f" * 16


def doc(**fields: object) -> str:
    base: dict[str, object] = {
        "v": 1,
        "type": "message",
        "call": CALL,
        "seq": 1,
        "ack": 0,
        "text": "hi",
        "part": 1,
        "parts": 1,
    }
    base.update(fields)
    return json.dumps(base)


def test_roundtrip_every_type() -> None:
    bodies = {
        "request": {"topic": "t", "name": "n"},
        "accept": {},
        "reject": {"reason": "r"},
        "message": {"text": "hello", "part": 1, "parts": 1},
        "file": {
            "fid": "1" * 32,
            "name": "a.txt",
            "size": 3,
            "sha256": "2" * 64,
            "index": 0,
            "count": 1,
            "data": b"abc",
        },
        "escalation": {"text": "help"},
        "end": {"reason": ""},
    }
    for kind, body in bodies.items():
        message = WireMessage(kind, CALL, 3, ack=2, body=body)
        assert decode(message.encode()) == message
    ack = WireMessage("ack", CALL, 0, ack=9)
    assert decode(ack.encode()) == ack


@pytest.mark.parametrize(
    "content",
    [
        "",
        "nope",
        "[]",
        doc(v=2),
        doc(type="shell"),
        doc(call="XYZ"),
        doc(seq=0),
        doc(seq=True),
        doc(seq=-1),
        doc(part=2, parts=1),
        doc(text=5),
        doc(text="x" * 20_000),
        json.dumps({"v": 1, "type": "ack", "call": CALL, "seq": 4}),
        json.dumps({"v": 1, "type": "reject", "call": CALL, "seq": 1}),
        json.dumps(
            {
                "v": 1,
                "type": "file",
                "call": CALL,
                "seq": 1,
                "fid": "1" * 32,
                "name": "x",
                "size": 1,
                "sha256": "2" * 64,
                "index": 0,
                "count": 1,
                "data": "!!notb64",
            }
        ),
        json.dumps(
            {
                "v": 1,
                "type": "file",
                "call": CALL,
                "seq": 1,
                "fid": "1" * 32,
                "name": "x",
                "size": 1,
                "sha256": "2" * 64,
                "index": 1,
                "count": 1,
                "data": "",
            }
        ),
        json.dumps(
            {
                "v": 1,
                "type": "file",
                "call": CALL,
                "seq": 1,
                "fid": "1" * 32,
                "name": "x",
                "size": 1,
                "sha256": "2" * 64,
                "index": 0,
                "count": 1,
                "data": base64.b64encode(bytes(FILE_CHUNK_BYTES + 1)).decode(),
            }
        ),
        "[" * 100_000,
    ],
)
def test_invalid_content_is_refused(content: str) -> None:
    with pytest.raises(WireError):
        decode(content)


def test_split_text_respects_byte_limit_and_characters() -> None:
    text = "a" + "€" * 10
    parts = split_text(text, limit=7)
    assert "".join(parts) == text
    assert all(len(p.encode()) <= 7 for p in parts)
    assert split_text("") == [""]


def test_chunk_count() -> None:
    assert chunk_count(0) == 1
    assert chunk_count(FILE_CHUNK_BYTES) == 1
    assert chunk_count(FILE_CHUNK_BYTES + 1) == 2


def test_peer_text_is_cleaned_at_the_boundary() -> None:
    content = WireMessage(
        "message", CALL, 1, body={"text": "a\x1b[2Jb\u202ec\nd", "part": 1, "parts": 1}
    ).encode()
    assert decode(content).body["text"] == "ab\u202ec\nd"  # bidi is the sender's text
    request = WireMessage("request", CALL, 1, body={"topic": "t\x07opic", "name": "n"}).encode()
    assert decode(request).body["topic"] == "topic"
