"""File chunks sized to the peer's relays: the `chunk` field of feature level 2."""

from __future__ import annotations

import hashlib
import random

import pytest

from p2p_comm.protocol.events import FileComplete, WriteChunk
from p2p_comm.protocol.wire import (
    FILE_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    WireError,
    WireMessage,
    decode,
)
from tests.unit.protocol.test_call_core import connected, exchange, sent


@pytest.mark.parametrize("chunk", [1024, 5000, FILE_CHUNK_BYTES])
def test_smaller_chunks_reassemble_and_say_their_size(chunk: int) -> None:
    caller, callee = connected()
    data = random.Random(chunk).randbytes(3 * chunk + 11)
    digest = hashlib.sha256(data).hexdigest()
    effects = caller.send_file("f" * 32, "a.bin", data, digest, 2.0, chunk_bytes=chunk)
    messages = sent(effects)
    assert len(messages) == 4
    wanted = chunk if chunk != FILE_CHUNK_BYTES else None
    assert all(m.body.get("chunk") == wanted for m in messages)
    assert all(decode(m.encode()).body.get("chunk") == wanted for m in messages)
    got = exchange(caller, callee, effects, 2.0)
    writes = sorted((e for e in got if isinstance(e, WriteChunk)), key=lambda w: w.offset)
    assert b"".join(w.data for w in writes) == data
    assert [e.sha256 for e in got if isinstance(e, FileComplete)] == [digest]


def test_a_level_1_peer_keeps_the_default_chunk() -> None:
    caller, _ = connected()
    caller.peer_level = 1
    data = bytes(FILE_CHUNK_BYTES + 1)
    messages = sent(caller.send_file("f" * 32, "a", data, "0" * 64, 2.0, chunk_bytes=2048))
    assert len(messages) == 2 and all("chunk" not in m.body for m in messages)


def test_a_chunk_larger_than_it_declares_is_refused() -> None:
    body = {
        "fid": "f" * 32,
        "name": "a",
        "size": 1500,
        "sha256": "0" * 64,
        "index": 0,
        "count": 2,
        "data": bytes(1500),
        "chunk": 1024,
    }
    with pytest.raises(WireError, match="declared"):
        decode(WireMessage("file", "c" * 32, 1, 0, body).encode())
    assert decode(WireMessage("file", "c" * 32, 1, 0, {**body, "chunk": 2048}).encode())


def test_level_2_peers_take_chunks_up_to_24_kib_and_no_more() -> None:
    caller, callee = connected()
    data = random.Random(1).randbytes(2 * MAX_CHUNK_BYTES + 5)
    digest = hashlib.sha256(data).hexdigest()
    effects = caller.send_file("f" * 32, "big.bin", data, digest, 2.0, chunk_bytes=10**6)
    messages = sent(effects)  # round-tripped through the codec: the larger content decodes
    assert len(messages) == 3 and messages[0].body["chunk"] == MAX_CHUNK_BYTES
    got = exchange(caller, callee, effects, 2.0)
    writes = sorted((e for e in got if isinstance(e, WriteChunk)), key=lambda w: w.offset)
    assert b"".join(w.data for w in writes) == data
    oversized = WireMessage(
        "file",
        "ab" * 16,
        5,
        body={**messages[0].body, "data": bytes(MAX_CHUNK_BYTES + 1)},
    )
    with pytest.raises(WireError):
        decode(oversized.encode())


def test_the_largest_chunk_that_fits_a_relay_limit_is_measured() -> None:
    import nostr_sdk as ns

    from p2p_comm import sdk_speedups
    from p2p_comm.daemon.relays.wrap_sizes import largest_fitting_chunk

    sdk_speedups.apply()
    keys = ns.Keys.generate()
    at_16k = largest_fitting_chunk(16 * 1024, keys)
    at_64k = largest_fitting_chunk(64 * 1024, keys)
    at_128k = largest_fitting_chunk(128 * 1024, keys)
    assert 1024 <= at_16k < FILE_CHUNK_BYTES
    assert FILE_CHUNK_BYTES < at_64k < MAX_CHUNK_BYTES  # the lever: fewer, larger chunks
    assert at_128k == MAX_CHUNK_BYTES
