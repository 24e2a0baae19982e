"""Fragments (protocol/frag.py): cutting, joining, and what a stranger cannot make us keep."""

from __future__ import annotations

import base64
import json
import random

import pytest

from p2p_comm.protocol import frag, wire
from p2p_comm.protocol.frag import FragmentError, Reassembler
from p2p_comm.protocol.wire import WireMessage

CALL = "ab" * 16
PEER = "11" * 32
OTHER = "22" * 32


def chunk(seq: int = 5, size: int = 20_000) -> WireMessage:
    data = random.Random(seq).randbytes(size)
    body = {
        "fid": "cd" * 16,
        "name": "report.bin",
        "size": size,
        "sha256": "ef" * 32,
        "index": 0,
        "count": 1,
        "data": data,
        "chunk": wire.MAX_CHUNK_BYTES,
    }
    return WireMessage("file", CALL, seq, 3, body)


def on_the_wire(fragment: WireMessage) -> WireMessage:
    """As the receiver sees it: encoded, then decoded and validated."""
    return wire.decode(fragment.encode())


def feed(r: Reassembler, pieces: list[WireMessage], sender: str = PEER) -> list[WireMessage]:
    out = []
    for piece in pieces:
        whole = r.add(sender, on_the_wire(piece), 0.0)
        if whole is not None:
            out.append(whole)
    return out


def test_split_cuts_equal_slices_that_rejoin_to_the_same_message() -> None:
    message = chunk()
    pieces = frag.split(message, 7000)
    assert len(pieces) == 4  # 26,7xx bytes of JSON in slices of at most 7,000
    sizes = [len(p.body["data"]) for p in pieces]
    assert sizes[:-1] == [sizes[0]] * 3 and 0 < sizes[-1] <= sizes[0] <= 7000
    assert all(p.type == "frag" and p.seq == 5 and p.call == CALL for p in pieces)
    assert all(len(p.encode().encode()) < wire.MAX_CONTENT_BYTES for p in pieces)
    (whole,) = feed(Reassembler(), pieces)
    assert whole == wire.decode(message.encode())


def test_a_message_that_would_fit_one_piece_still_goes_in_two() -> None:
    pieces = frag.split(
        WireMessage("message", CALL, 2, 0, {"text": "hi", "part": 1, "parts": 1}), 20_000
    )
    assert len(pieces) == 2
    (whole,) = feed(Reassembler(), pieces)
    assert whole.body["text"] == "hi"


def test_out_of_order_and_duplicated_pieces_join_once() -> None:
    pieces = frag.split(chunk(), 3000)
    late = pieces[1:] + pieces[1:3]
    random.Random(1).shuffle(late)
    r = Reassembler()
    got = feed(r, late)
    assert got == [] and len(r) == 1
    got = feed(r, [pieces[0], *pieces])  # completes, then a whole retransmission again
    assert len(got) == 2 and got[0] == got[1]  # the call core de-duplicates by seq
    assert len(r) == 0


def test_two_seqs_and_two_senders_are_kept_apart() -> None:
    a, b = frag.split(chunk(5), 5000), frag.split(chunk(6), 5000)
    r = Reassembler()
    interleaved = [p for pair in zip(a, b, strict=False) for p in pair]
    assert [m.seq for m in feed(r, interleaved)] == [5, 6]
    # The same call and seq from another key is another message, never mixed with ours.
    assert feed(r, a[:-1]) == [] and feed(r, a[-1:], sender=OTHER) == []
    assert len(r) == 2


def test_two_cuttings_of_one_message_never_mix_and_the_first_complete_wins() -> None:
    old, new = frag.split(chunk(), 9000), frag.split(chunk(), 4000)
    r = Reassembler()
    feed(r, old[:-1])
    assert feed(r, new[:-1]) == [] and len(r) == 2  # kept apart: slices differ
    assert [m.seq for m in feed(r, new[-1:])] == [5]
    assert len(r) == 0  # the other cutting of the same message is not needed any more
    assert feed(r, old[-1:]) == []  # a late piece of it starts afresh, harmlessly


def piece(**fields: object) -> WireMessage:
    document: dict[str, object] = {
        "v": 1,
        "type": "frag",
        "call": CALL,
        "seq": 4,
        "ack": 0,
        "i": 0,
        "n": 2,
        "size": 10,
        "data": base64.b64encode(b"x" * 5).decode(),
    }
    document.update(fields)
    return wire.decode(json.dumps(document))


@pytest.mark.parametrize(
    "fields",
    [
        {"data": base64.b64encode(b"x" * 4).decode()},  # wrong slice length
        {"i": 1, "data": base64.b64encode(b"x" * 6).decode()},  # last slice too long
        {"n": 200, "size": 30_000},  # more pieces than any message needs
        {"n": 10, "size": 9, "data": base64.b64encode(b"x").decode()},  # an empty last piece
    ],
)
def test_inconsistent_pieces_are_dropped(fields: dict[str, object]) -> None:
    with pytest.raises(FragmentError):
        Reassembler().add(PEER, piece(**fields), 0.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"i": 2},  # index beyond count
        {"size": wire.MAX_CONTENT_BYTES + 1},
        {"data": "not base64!"},
        {"data": "A" * 40_000},
        {"n": 0},
    ],
)
def test_malformed_fragments_do_not_decode(fields: dict[str, object]) -> None:
    with pytest.raises(wire.WireError):
        piece(**fields)


def test_junk_that_joins_is_dropped() -> None:
    r = Reassembler()
    cases = [
        b"not json at all!",
        b"\xff\xfe" + b"x" * 10,  # not UTF-8
        WireMessage("ack", CALL, 0, 3).encode().encode(),  # not sequenced
        WireMessage("end", "cd" * 16, 4, 0, {"reason": ""}).encode().encode(),  # other call
        WireMessage("end", CALL, 9, 0, {"reason": ""}).encode().encode(),  # other seq
    ]
    for payload in cases:
        size, half = len(payload), -(-len(payload) // 2)
        first = piece(n=2, size=size, data=base64.b64encode(payload[:half]).decode())
        second = piece(i=1, n=2, size=size, data=base64.b64encode(payload[half:]).decode())
        assert r.add(PEER, first, 0.0) is None
        with pytest.raises(FragmentError):
            r.add(PEER, second, 0.0)
    assert len(r) == 0
    # A fragment carrying a fragment is refused too.
    inner = frag.split(chunk(4), 9000)[0]
    pieces = frag.split_encoded(CALL, 4, inner.encode(), 20_000)
    with pytest.raises(FragmentError):
        feed(r, pieces)


def test_memory_is_bounded_by_count_per_sender_and_age() -> None:
    r = Reassembler(max_partial=4, per_sender=3, ttl=10.0)
    for seq in range(1, 6):  # one sender: never more than its share
        r.add(PEER, on_the_wire(frag.split(chunk(seq), 5000)[0]), 0.0)
    assert len(r) == 3
    r.add(OTHER, on_the_wire(frag.split(chunk(9), 5000)[0]), 1.0)
    r.add(OTHER, on_the_wire(frag.split(chunk(8), 5000)[0]), 1.0)
    assert len(r) == 4  # the total cap evicted PEER's oldest
    assert r.held_bytes() <= 4 * wire.MAX_FRAGMENT_BYTES
    r.add(OTHER, on_the_wire(frag.split(chunk(7), 5000)[0]), 10.5)  # PEER's are past the ttl
    assert len(r) == 3


def test_split_refuses_what_cannot_be_carried() -> None:
    with pytest.raises(ValueError):
        frag.split_encoded(CALL, 1, "x" * (wire.MAX_CONTENT_BYTES + 1), 5000)
    with pytest.raises(ValueError):
        frag.split(WireMessage("ack", CALL, 0, 1), 5000)
    assert frag.usable(4) and not frag.usable(3)
