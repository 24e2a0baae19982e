"""Property-based tests: hostile input never escapes the decoder or reaches the agent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_comm.protocol.call import Call, Limits
from p2p_comm.protocol.events import Deliver
from p2p_comm.protocol.presence import decode_presence
from p2p_comm.protocol.wire import TYPES, WireError, WireMessage, decode

CALL = "ab" * 16
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def try_decode(content: str) -> WireMessage | None:
    try:
        return decode(content)
    except WireError:
        return None


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    try_decode(data.decode("utf-8", errors="replace"))


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_wire_error(value: Any) -> None:
    try_decode(json.dumps(value))


message_like = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 2, "1"]),
        "type": st.sampled_from([*TYPES, "x"]),
        "call": st.sampled_from([CALL, "zz", "AB" * 16]),
        "seq": st.integers(-2, 10),
        "ack": st.integers(-2, 10),
    },
    optional={
        "text": st.text(max_size=50) | st.integers(),
        "part": st.integers(-1, 3),
        "parts": st.integers(-1, 3),
        "reason": st.text(max_size=20),
        "topic": st.text(max_size=20),
        "name": st.text(max_size=20),
        "fid": st.sampled_from(["1" * 32, "x"]),
        "size": st.integers(-1, 100),
        "sha256": st.sampled_from(["2" * 64, "no"]),
        "index": st.integers(-1, 3),
        "count": st.integers(-1, 3),
        "data": st.sampled_from(["", "YWJj", "!!"]),
    },
)


@settings(max_examples=500)
@given(st.lists(message_like, max_size=12))
def test_a_stranger_cannot_make_a_ringing_call_deliver_anything(documents: list[Any]) -> None:
    """Before the call is answered, nothing a peer sends reaches the agent but the request."""
    _, out = Call.start(CALL, "b" * 64, "topic", "alice", 0.0, Limits())
    request = decode(next(e.message for e in out).encode())  # type: ignore[attr-defined]
    callee, _ = Call.ring_in(request, "a" * 64, 0.0, 0.0, Limits())
    for document in documents:
        message = try_decode(json.dumps(document))
        if message is None:
            continue
        effects = callee.receive(message, 1.0)
        delivered = [e for e in effects if isinstance(e, Deliver)]
        assert all(d.type in ("call_missed",) for d in delivered), delivered


@settings(max_examples=300)
@given(st.text(max_size=300), st.lists(st.lists(st.text(max_size=30), max_size=3), max_size=5))
def test_presence_decoder_never_raises(content: str, tags: list[list[str]]) -> None:
    decode_presence("ab" * 32, 0, content, tags)
