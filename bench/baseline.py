"""Raw nostr-sdk baselines: what the same work costs without p2p-comm around it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import nostr_sdk as ns

from p2p_comm import sdk_speedups

sdk_speedups.apply()  # the baseline gets the same fast string passing as the daemon


async def _client(url: str) -> Any:
    client = ns.Client()
    await client.add_relay(ns.RelayUrl.parse(url))
    await client.connect(and_wait=timedelta(seconds=5))
    return client


async def _pair(url: str) -> tuple[Any, Any, Any, Any, Any]:
    """Sender keys+client, receiver keys+client, and the receiver's notification stream."""
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    sender, receiver = ns.Keys.generate(), ns.Keys.generate()
    send_client, recv_client = await _client(url), await _client(url)
    stream = recv_client.notifications()
    since = ns.Timestamp.from_secs(int(time.time()) - 3 * 86400)
    await recv_client.subscribe(
        ns.ReqTarget.auto(
            [ns.Filter().kind(ns.Kind(1059)).pubkey(receiver.public_key()).since(since)]
        )
    )
    return sender, send_client, receiver, recv_client, stream


async def _next_unwrapped(stream: Any, receiver: Any) -> str:
    while True:
        note = await stream.next()
        if note.is_new_event() and note.event.kind().as_u16() == 1059:
            gift = await ns.UnwrappedGift.from_gift_wrap_async(receiver, note.event)
            return str(gift.rumor().content())


async def _latency(url: str, count: int) -> list[float]:
    sender, send_client, receiver, recv_client, stream = await _pair(url)
    samples = []
    for index in range(count):
        start = time.perf_counter()
        wrap = await ns.nip17_make_private_msg_async(sender, receiver.public_key(), f"ping {index}")
        await send_client.send_event(wrap)
        text = await _next_unwrapped(stream, receiver)
        samples.append(time.perf_counter() - start)
        assert text == f"ping {index}"
    await send_client.shutdown()
    await recv_client.shutdown()
    return samples


async def _throughput(url: str, payloads: list[str]) -> float:
    """Seconds to wrap, publish, receive and unwrap every payload, one publish at a time."""
    sender, send_client, receiver, recv_client, stream = await _pair(url)

    async def receive_all() -> None:
        for _ in payloads:
            await _next_unwrapped(stream, receiver)

    start = time.perf_counter()
    receiving = asyncio.create_task(receive_all())
    for payload in payloads:
        wrap = await ns.nip17_make_private_msg_async(sender, receiver.public_key(), payload)
        await send_client.send_event(wrap)
    await receiving
    elapsed = time.perf_counter() - start
    await send_client.shutdown()
    await recv_client.shutdown()
    return elapsed


async def _fetch(url: str, query: Any) -> tuple[float, int]:
    """Fetch every event matching ``query``, paging back with ``until`` past relay caps."""
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = await _client(url)
    start = time.perf_counter()
    seen: set[str] = set()
    until = None
    while True:
        page = query.until(ns.Timestamp.from_secs(until)) if until is not None else query
        events = await client.fetch_events(ns.ReqTarget.auto([page]), timeout=timedelta(seconds=60))
        if not events:
            break
        seen.update(e.id().to_hex() for e in events)
        until = min(e.created_at().as_secs() for e in events) - 1
    elapsed = time.perf_counter() - start
    await client.shutdown()
    return elapsed, len(seen)


def message_latency(url: str, count: int) -> list[float]:
    """Build a NIP-17 wrap, publish, receive, unwrap: seconds per message."""
    return asyncio.run(_latency(url, count))


def message_rate(url: str, count: int) -> float:
    """Messages per second, publish and unwrap, between two clients on one relay."""
    return count / asyncio.run(_throughput(url, [f"message {i}" for i in range(count)]))


def bytes_rate(url: str, total: int, chunk: int) -> float:
    """Bytes per second when ``total`` bytes travel as base64 chunks of ``chunk`` bytes."""
    data = os.urandom(total)
    payloads = [base64.b64encode(data[i : i + chunk]).decode() for i in range(0, total, chunk)]
    return total / asyncio.run(_throughput(url, payloads))


def fetch(url: str, query: Any) -> tuple[float, int]:
    """Seconds to fetch everything ``query`` matches (paged), and how many events came back."""
    return asyncio.run(_fetch(url, query))


async def _publish_presences(url: str, count: int, lifetime: int) -> None:
    from p2p_comm.protocol.presence import PRESENCE_KIND, Presence, encode_presence

    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = await _client(url)
    now = int(time.time())
    events = []
    for index in range(count):
        # Spread over the last 100 s, as agents announcing every 120 s would be.
        created = now - (index * 100) // count
        presence = Presence(name=f"bench-agent-{index}", capabilities=("bench",), relays=(url,))
        content, tags = encode_presence(presence, created + lifetime)
        builder = ns.EventBuilder(ns.Kind(PRESENCE_KIND), content).tags(
            [ns.Tag.parse(t) for t in tags]
        )
        builder = builder.custom_created_at(ns.Timestamp.from_secs(created))
        events.append(builder.finalize(ns.Keys.generate()))
    for start in range(0, count, 200):
        await asyncio.gather(*(client.send_event(e) for e in events[start : start + 200]))
    await client.shutdown()


def publish_presences(url: str, count: int, lifetime: int) -> None:
    """Announce ``count`` fake agents on the relay."""
    asyncio.run(_publish_presences(url, count, lifetime))


async def _paged(client: Any, pubkey: Any, since: int) -> dict[str, Any]:
    """Every wrap for ``pubkey`` since ``since``, paging back past the relay's cap."""
    query = ns.Filter().kind(ns.Kind(1059)).pubkey(pubkey).since(ns.Timestamp.from_secs(since))
    found: dict[str, Any] = {}
    until = None
    while True:
        page = query.until(ns.Timestamp.from_secs(until)) if until is not None else query
        events = await client.fetch_events(ns.ReqTarget.auto([page]), timeout=timedelta(seconds=60))
        fresh = [e for e in events if e.id().to_hex() not in found]
        if not fresh:
            break
        for event in fresh:
            found[event.id().to_hex()] = event
        until = min(e.created_at().as_secs() for e in events)
    return found


async def _fetch_and_unwrap(
    url: str, keys: Any, since: int, skip: frozenset[str] = frozenset()
) -> tuple[float, int]:
    """A raw client's catch-up: page back past the relay's cap, then unwrap every wrap
    not in ``skip`` (those its owner had before the outage)."""
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = await _client(url)
    start = time.perf_counter()
    found = await _paged(client, keys.public_key(), since)
    unwrapped = 0
    for event_id, event in found.items():
        if event_id in skip:
            continue
        # Counted whether or not it opens: a raw client opens a ratchet seal's outer layer
        # and seal, and then has no NIP-44 to read (forward secrecy, issue 22).
        unwrapped += 1
        with contextlib.suppress(Exception):
            ns.UnwrappedGift.from_gift_wrap(keys, event)
    elapsed = time.perf_counter() - start
    await client.shutdown()
    return elapsed, unwrapped


def fetch_and_unwrap(url: str, keys: Any, since: int) -> tuple[float, int]:
    """Seconds for a raw paged fetch and unwrap of every wrap for ``keys``, and how many."""
    return asyncio.run(_fetch_and_unwrap(url, keys, since))


async def _wrap_ids(url: str, pubkey_hex: str, since: int) -> set[str]:
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = await _client(url)
    try:
        return set(await _paged(client, ns.PublicKey.parse(pubkey_hex), since))
    finally:
        await client.shutdown()


def wrap_ids(url: str, pubkey_hex: str, since: int) -> set[str]:
    """The ids of the wraps for ``pubkey_hex`` on the relay since ``since``."""
    return asyncio.run(_wrap_ids(url, pubkey_hex, since))


def catch_up_process(url: str, secret_hex: str, since: int, skip: set[str]) -> tuple[float, int]:
    """A raw client's catch-up as the daemon's is timed: from starting a process (Python,
    nostr-sdk, a connection) until every wrap since ``since`` not in ``skip`` is unwrapped.
    Returns (seconds, wraps unwrapped)."""
    with tempfile.NamedTemporaryFile("w", suffix=".ids") as handle:
        handle.write("\n".join(sorted(skip)))
        handle.flush()
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench.baseline", url, secret_hex, str(since), handle.name],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - start
    return elapsed, int(done.stdout.split()[-1])


if __name__ == "__main__":  # catch_up_process's child
    _url, _secret, _since, _skip_file = sys.argv[1:5]
    _skip = frozenset(Path(_skip_file).read_text().split())
    _, _count = asyncio.run(_fetch_and_unwrap(_url, ns.Keys.parse(_secret), int(_since), _skip))
    print(_count)
