"""Bounds on what strangers can make us do: token buckets and the inbound gate.

Pure: the clock is passed in. Buckets refill continuously; a request that would take
more than is left is refused and costs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_TRACKED_PEERS = 10_000
STRANGER_REQUESTS_PER_MINUTE = 20
# Wraps sealed by keys we have no call with, opened past their first layer per second (all
# such keys together). A stranger's only use is a call request; a flood of well-formed
# wraps from fresh keys cost a full unwrap each (about half a core at 1,000 a second).
STRANGER_UNWRAPS_PER_SECOND = 50


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
    # Per relay, for wraps not known by their key: our peers' wraps in a call come in
    # their lanes (protocol/lane.py) and never meet it, so it bounds what strangers and
    # peers without lanes cost (each wrap it admits is a decryption). It was 600 before
    # lanes: at 300, two of our own agents shed each other's legitimate bursts (the
    # catch-ups that fetched them again then held every wrap; they no longer do).
    inbound_events_per_second: int = 200
    max_wrap_bytes: int = 131_072
    relay_mute_seconds: float = 60.0  # how long a flooding relay goes unread
    # Messages held for a gap before them, over all calls (only calls we placed or
    # answered hold any: a stranger's share is nothing). Past it, an early message is
    # dropped unreceipted, and taken when its sender re-sends it after the gap.
    max_held_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class RingCounts:
    """What a call request would join, counted by the shell: for a known caller its
    ``ringing`` and ``open`` leave strangers' ringing calls out (they cannot crowd it out)."""

    stranger: bool
    ringing: int
    open: int
    ringing_strangers: int = 0
    ringing_from_peer: int = 0


@dataclass
class InboundGate:
    """Decides, cheaply and before expensive work, what inbound traffic to take."""

    limits: InboundLimits
    shed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    _events: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _bytes: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _requests: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    # Call requests from all strangers together: a request and an `end` right after it
    # free the slot at once, and each rang-in call is a row in the history.
    _stranger_unwraps: TokenBucket = field(
        default_factory=lambda: TokenBucket(
            STRANGER_UNWRAPS_PER_SECOND, 2.0 * STRANGER_UNWRAPS_PER_SECOND
        )
    )
    _strangers: TokenBucket = field(
        default_factory=lambda: TokenBucket(STRANGER_REQUESTS_PER_MINUTE / 60.0, 10.0)
    )

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def admit_wrap(self, size: int, now: float, relay: str = "") -> bool:
        """Before unwrapping: size, and the rate of the relay it came from (so one noisy
        relay is shed without starving the others). A refused wrap is not marked seen: a
        catch-up fetches it again, and its sender re-sends it as a fresh wrap."""
        return self.admit_size(size) and self.admit_rate(now, relay)

    def admit_size(self, size: int) -> bool:
        """`admit_wrap`'s size half."""
        if size > self.limits.max_wrap_bytes:
            self._count("oversized")
            return False
        return True

    def admit_rate(self, now: float, relay: str = "") -> bool:
        """`admit_wrap`'s rate half, which needs nothing read from the wrap: a flood's
        wraps it sheds cost no more than their arrival."""
        rate = float(self.limits.inbound_events_per_second)
        if not _bucket(self._events, relay, rate, rate * 2).allow(now):
            self.shed += 1
            return False
        return True

    def admit_stranger(self, now: float) -> bool:
        """Whether one more wrap sealed by a key we do not know may be opened fully now. A
        refused one is not marked: its sender re-sends it as a fresh wrap."""
        if self._stranger_unwraps.allow(now):
            return True
        self._count("stranger_unwraps")
        return False

    def admit_bytes(self, peer: str, size: int, now: float) -> bool:
        """After unwrapping: how much one peer may make us process and store per minute,
        counted in what its wraps carry (the rumor's content, about 0.6 of the wrap)."""
        if not self._bytes_bucket(peer).allow(now, float(size)):
            self._count("peer_bytes")
            return False
        return True

    def bytes_wait(self, peer: str, size: int, now: float) -> float:
        """Seconds until ``peer``'s budget holds ``size`` bytes (inf if it never can)."""
        bucket = self._bytes_bucket(peer)
        if size > bucket.burst:
            return float("inf")
        bucket.allow(now, 0.0)  # brings the bucket up to now
        return max(0.0, (size - bucket.tokens) / bucket.rate)

    def _bytes_bucket(self, peer: str) -> TokenBucket:
        per_minute = float(self.limits.bytes_per_peer_per_minute)
        return _bucket(self._bytes, peer, per_minute / 60.0, per_minute)

    @property
    def stranger_ringing(self) -> int:
        """How many of the ringing slots strangers may hold at once, all keys together."""
        return max(1, self.limits.max_ringing // 2)

    def admit_request(self, peer: str, calls: RingCounts, now: float) -> str | None:
        """None if a call request may ring; otherwise why it is dropped.

        A key we do not know (no contact, no call we placed or answered) costs nothing
        to make, so strangers ring in a share of the slots of their own (`stranger_ringing`),
        one call per key at a time, and at a pace over all of them together: fresh keys by
        the hundred then fill only their share, and a known peer's call still rings."""
        per_minute = self.limits.call_requests_per_peer_per_minute
        bucket = _bucket(self._requests, peer, per_minute / 60.0, float(per_minute))
        if not bucket.allow(now):
            reason = "peer_call_rate"
        elif (
            calls.stranger
            and (calls.ringing_from_peer > 0 or calls.ringing_strangers >= self.stranger_ringing)
        ) or calls.ringing >= self.limits.max_ringing:
            reason = "too_many_ringing"
        elif calls.open >= self.limits.max_open_calls:
            reason = "too_many_open_calls"
        elif calls.stranger and not self._strangers.allow(now):
            reason = "stranger_call_rate"
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


class RecentIds:
    """A bounded set of event ids, oldest forgotten first: what we know to skip without a
    database row (junk a stranger can send without end must not grow the disk)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class RepeatCounter:
    """Counts, per relay, how often the same event id arrives within a window. A relay
    sends each stored event once per subscription (again after a reconnect, and once more
    per catch-up query), so anything past ``allowance`` in a window is a relay repeating
    itself on purpose, and each such copy is waste."""

    def __init__(self, window: float, allowance: int = 3, max_ids: int = 50_000) -> None:
        self.window = window
        self.allowance = allowance
        self.max_ids = max_ids
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}

    def repeated(self, relay: str, event_id: str, now: float) -> bool:
        """Note one arrival; True if it is one too many."""
        start, counts = self._counts.setdefault(relay, (now, {}))
        if now - start > self.window or len(counts) >= self.max_ids:
            counts = {}
            self._counts[relay] = (now, counts)
        seen = counts[event_id] = counts.get(event_id, 0) + 1
        return seen > self.allowance
