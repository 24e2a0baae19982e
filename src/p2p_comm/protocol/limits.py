"""Bounds on what strangers can make us do: token buckets and the inbound gate.

Pure: the clock is passed in. Buckets refill continuously; a request that would take
more than is left is refused and costs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_TRACKED_PEERS = 10_000


@dataclass
class TokenBucket:
    """``rate`` units per second, holding at most ``burst``."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True


@dataclass(frozen=True)
class InboundLimits:
    """The configurable limits on inbound traffic."""

    call_requests_per_peer_per_minute: int = 5
    max_ringing: int = 10
    max_open_calls: int = 20
    bytes_per_peer_per_minute: int = 64 * 1024 * 1024
    # About what one daemon unwraps and takes per second on a small 2-core machine: a peer
    # sending as fast as we can receive is not a flood. At 300, two of our own agents
    # shed each other's legitimate bursts, and the catch-ups that fetched them again held
    # hundreds of MiB.
    inbound_events_per_second: int = 600
    max_wrap_bytes: int = 131_072


@dataclass
class InboundGate:
    """Decides, cheaply and before expensive work, what inbound traffic to take."""

    limits: InboundLimits
    shed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    _events: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _bytes: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _requests: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def admit_wrap(self, size: int, now: float, relay: str = "") -> bool:
        """Before unwrapping: size, and the rate of the relay it came from (so one noisy
        relay is shed without starving the others). A refused wrap is not marked seen: a
        catch-up fetches it again, and its sender re-sends it as a fresh wrap."""
        if size > self.limits.max_wrap_bytes:
            self._count("oversized")
            return False
        rate = float(self.limits.inbound_events_per_second)
        if not _bucket(self._events, relay, rate, rate * 2).allow(now):
            self.shed += 1
            return False
        return True

    def admit_bytes(self, peer: str, size: int, now: float) -> bool:
        """After unwrapping: how much one peer may make us process and store per minute."""
        rate = self.limits.bytes_per_peer_per_minute / 60.0
        bucket = _bucket(self._bytes, peer, rate, float(self.limits.bytes_per_peer_per_minute))
        if not bucket.allow(now, float(size)):
            self._count("peer_bytes")
            return False
        return True

    def admit_request(self, peer: str, ringing: int, open_calls: int, now: float) -> str | None:
        """None if a call request may ring; otherwise why it is dropped."""
        per_minute = self.limits.call_requests_per_peer_per_minute
        bucket = _bucket(self._requests, peer, per_minute / 60.0, float(per_minute))
        if not bucket.allow(now):
            reason = "peer_call_rate"
        elif ringing >= self.limits.max_ringing:
            reason = "too_many_ringing"
        elif open_calls >= self.limits.max_open_calls:
            reason = "too_many_open_calls"
        else:
            return None
        self._count(reason)
        return reason


def _bucket(
    table: OrderedDict[str, TokenBucket], key: str, rate: float, burst: float
) -> TokenBucket:
    bucket = table.get(key)
    if bucket is None:
        bucket = table[key] = TokenBucket(rate, burst)
        while len(table) > MAX_TRACKED_PEERS:
            table.popitem(last=False)
    table.move_to_end(key)
    return bucket
