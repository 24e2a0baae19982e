"""Figures for public-relay policies (issue 11), each on relays behind the test simulator.

- the story (call, messages both ways, a file, end) on one relay limited to 60 events a
  minute (burst 20), and on three relays of which one allows 8 a minute: seconds to complete
  and refusals per accepted event;
- the same story on a relay demanding 20 bits of proof of work (NIP-13) of every event;
- a file through a relay whose messages are capped at 16 and 64 KiB: MiB/s beside a raw
  nostr-sdk transfer with the same chunk size; and through one announcing 128 KiB that refuses
  events over 64 KiB (strfry's defaults; the embedded relay behind the simulator takes no
  more than 64 KiB anyway): our chunks, cut for 128 KiB, are refused and go as fragments,
  beside raw at the chunk that really fits.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from tests.relaysim import Policies, RelaySim

from bench import baseline
from p2p_comm import rpc
from p2p_comm.harness import Agent, RelayProcess, wait_until


@dataclass
class StoryResult:
    seconds: float
    accepted: int
    refused: int
    mined: int = 0
    mining_seconds: float = 0.0  # per mined wrap, lately, averaged over both agents


@contextmanager
def _relays(policies: list[Policies]) -> Iterator[list[RelaySim]]:
    with ExitStack() as stack:
        sims = []
        for policy in policies:
            upstream = RelayProcess().start()
            stack.callback(upstream.stop)
            sims.append(stack.enter_context(RelaySim(upstream.url, policy)))
        yield sims


def _events(agent: Agent, kind: str, count: int, timeout: float) -> None:
    seen: list[dict[str, Any]] = []

    def enough() -> bool:
        got = rpc.request(agent.paths.socket, "wait", {"timeout": 2}, timeout=10)["events"]
        if got:  # read, then acknowledge, as every client does
            rpc.request(agent.paths.socket, "ack", {"event_ids": [e["event_id"] for e in got]})
        seen.extend(e for e in got if e["type"] == kind)
        return len(seen) >= count

    wait_until(enough, timeout, f"{count} {kind} at {agent.name}")


def story(policies: list[Policies], messages: int, file_bytes: int) -> StoryResult:
    """Call, ``messages`` each way, one file, end; timed from the call to the end."""
    with _relays(policies) as sims:
        urls = [sim.url for sim in sims]
        alice, bob = Agent("alice", urls), Agent("bob", urls)
        try:
            for agent in (alice, bob):
                agent.run("daemon", "start")
            wait_until(lambda: "bob" in alice.online_names(), 60, "discovery")
            started = time.perf_counter()
            call_id = str(alice.json("call", "bob", "bench")["call_id"])
            _events(bob, "call_request", 1, 120)
            bob.json("answer", "accept", "--call", call_id[:8])
            _events(alice, "call_accepted", 1, 120)
            for i in range(messages):
                alice.json("send", f"a{i}")
                bob.json("send", f"b{i}")
            _events(bob, "message", messages, 600)
            _events(alice, "message", messages, 600)
            with tempfile.NamedTemporaryFile(dir="/tmp") as handle:
                handle.write(os.urandom(file_bytes))
                handle.flush()
                # It returns once every chunk is with the relays: minutes under PoW.
                alice.json("sendfile", "f.bin", "--path", handle.name, timeout=900)
                _events(bob, "file", 1, 600)
            alice.json("end", "done")
            _events(bob, "call_ended", 1, 600)
            seconds = time.perf_counter() - started
            stats = [a.json("status")["calls"]["stats"] for a in (alice, bob)]
            mined = sum(int(s["mined_wraps"]) for s in stats)
            mining = sum(float(s["mining_s_per_wrap"]) for s in stats) / 2
        finally:
            for agent in (alice, bob):
                agent.cleanup()
        counts = [sim.stats() for sim in sims]
    accepted, refused = sum(c["accepted"] for c in counts), sum(c["refused"] for c in counts)
    return StoryResult(seconds, accepted, refused, mined, mining)


def file_rate(
    limit: int, file_bytes: int, policies: Policies | None = None
) -> tuple[float, float, int]:
    """MiB/s of a file through a relay capped at ``limit`` bytes (or one with ``policies``
    whose real limit is ``limit``), the raw rate with the chunk that fits, and that chunk."""
    import nostr_sdk as ns

    from p2p_comm import sdk_speedups
    from p2p_comm.daemon.relays.wrap_sizes import largest_fitting_chunk

    sdk_speedups.apply()
    chunk = largest_fitting_chunk(limit, ns.Keys.generate())
    with _relays([policies or Policies.build(max_message_length=limit)]) as (sim,):
        alice, bob = Agent("alice", [sim.url]), Agent("bob", [sim.url])
        try:
            for agent in (alice, bob):
                agent.run("daemon", "start")
            wait_until(lambda: "bob" in alice.online_names(), 60, "discovery")
            call_id = str(alice.json("call", "bob", "bench")["call_id"])
            _events(bob, "call_request", 1, 60)
            bob.json("answer", "accept", "--call", call_id[:8])
            _events(alice, "call_accepted", 1, 60)
            data = os.urandom(file_bytes)
            with tempfile.NamedTemporaryFile(dir="/tmp") as handle:
                handle.write(data)
                handle.flush()
                started = time.perf_counter()
                alice.json("sendfile", "f.bin", "--path", handle.name, timeout=600)
                _events(bob, "file", 1, 600)
                seconds = time.perf_counter() - started
            received = list((bob.home / "p2p-files").rglob("f*.bin"))
            assert received and hashlib.sha256(received[0].read_bytes()).digest() == (
                hashlib.sha256(data).digest()
            )
        finally:
            for agent in (alice, bob):
                agent.cleanup()
        raw = baseline.bytes_rate(sim.url, file_bytes, chunk) / 1048576
    return file_bytes / 1048576 / seconds, raw, chunk


def rate_limited_story(add: Callable[[str, str, float], None], smoke: bool) -> None:
    """The story under 60/min (burst 20) on one relay, and 3 relays with one at 8/min."""
    messages, file_bytes = (3, 20 * 1024) if smoke else (20, 200 * 1024)
    window = 6.0 if smoke else 60.0  # smoke: the same shape, ten times faster
    cases = {
        "1 relay at 60/min, burst 20": [
            Policies.build(rate_limit=60 * window / 60, rate_burst=20, rate_window=window)
        ],
        "3 relays, one at 8/min": [
            Policies.build(),
            Policies.build(rate_limit=8 * window / 60, rate_window=window),
            Policies.build(),
        ],
    }
    for label, policies in cases.items():
        result = story(policies, messages, file_bytes)
        add(f"story ({messages} msgs each way, file) on {label}", "s", result.seconds)
        ratio = result.refused / max(1, result.accepted)
        add(f"refusals per accepted event, {label}", "ratio", ratio)


def pow_story(add: Callable[[str, str, float], None], smoke: bool) -> None:
    """The story on one relay that demands NIP-13 proof of work of every event (20 bits, as
    the simulator's `pow` case and relays that set `min_pow_difficulty` do).

    The file is small: mining hashes the whole event at every try, so a wrap costs in
    proportion to its size, and the 200 KiB file of the other stories (about 470 KB of
    wraps) would be minutes of mining on two cores for any client."""
    messages, file_bytes, bits = (3, 2 * 1024, 8) if smoke else (20, 8 * 1024, 20)
    result = story([Policies.build(min_pow=bits)], messages, file_bytes)
    label = f"1 relay demanding PoW {bits}"
    add(
        f"story ({messages} msgs each way, {file_bytes // 1024} KiB file) on {label}",
        "s",
        result.seconds,
    )
    add(f"call wraps mined, {label}", "wraps", result.mined)
    add(f"mining time per call wrap, {label}", "s", result.mining_seconds)
    add(f"refusals per accepted event, {label}", "ratio", result.refused / max(1, result.accepted))


def file_sizes(add: Callable[[str, float, float], None], smoke: bool) -> None:
    """A file at 16 and 64 KiB relay limits beside raw nostr-sdk at the same chunk."""
    size = 50 * 1024 if smoke else 5 * 1024 * 1024
    for kib in (16, 64):
        ours, raw, chunk = file_rate(kib * 1024, size)
        add(f"{size / 1048576:g} MiB file at a {kib} KiB relay ({chunk} B chunks)", ours, raw)
    # strfry's defaults: NIP-11 announces its 128 KiB websocket limit, events over 64 KiB are
    # refused. Our chunks are cut for 128 KiB, refused, and go as fragments; the raw
    # baseline uses the chunk that really fits.
    liar = Policies.build(max_event_bytes=65536, declared_max_message_length=131072)
    ours, raw, chunk = file_rate(65536, size, liar)
    name = f"{size / 1048576:g} MiB file at a relay announcing 128 KiB, taking 64 KiB"
    add(f"{name} (raw: {chunk} B chunks)", ours, raw)
