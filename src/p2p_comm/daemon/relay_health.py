"""Per-relay health: which relays to skip for a while, and which refused an event for good.

Pure bookkeeping with the clock passed in; the relay pool consults it before each
publish and reports each relay's answer to it afterwards.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# OK-false prefixes (NIP-01) after which re-sending the same event to that relay is futile.
PERMANENT = ("invalid", "blocked", "pow", "restricted", "auth-required")
MAX_REMEMBERED_REFUSALS = 10_000


@dataclass
class Health:
    """What we know about one relay's recent behaviour."""

    failures: int = 0
    skip_until: float = 0.0
    last_error: str = ""
    max_message_length: int | None = None


def _prefix(reason: str) -> str:
    return reason.split(":", 1)[0].strip().lower()


class RelayHealth:
    """Backoff on rate limits and on relays that do not answer; permanent refusals per event."""

    def __init__(self) -> None:
        self.relays: dict[str, Health] = {}
        self._refused: OrderedDict[str, set[str]] = OrderedDict()

    def of(self, url: str) -> Health:
        return self.relays.setdefault(url, Health())

    def targets(self, urls: tuple[str, ...], event_id: str, size: int, now: float) -> list[str]:
        """The relays worth sending this event to now (all of them rather than none)."""
        refused = self._refused.get(event_id, set())
        usable = [
            url
            for url in urls
            if url not in refused and (self.of(url).max_message_length or size) >= size
        ]
        ready = [url for url in usable if self.of(url).skip_until <= now]
        return ready or usable

    def record(self, url: str, event_id: str, error: str | None, now: float) -> None:
        health = self.of(url)
        if error is None or _prefix(error) == "duplicate":
            health.failures = 0
            health.skip_until = 0.0
            return
        health.last_error = error
        kind = _prefix(error)
        if kind in PERMANENT:
            self._refused.setdefault(event_id, set()).add(url)
            self._refused.move_to_end(event_id)
            while len(self._refused) > MAX_REMEMBERED_REFUSALS:
                self._refused.popitem(last=False)
            return
        health.failures += 1
        if kind == "rate-limited":
            health.skip_until = now + min(60.0, 2.0**health.failures)
        elif health.failures >= 3:  # timeouts, "not connected", and the like
            health.skip_until = now + min(60.0, 2.0 ** (health.failures - 2))

    def describe(self, url: str, state: str, now: float) -> str:
        health = self.of(url)
        if state != "connected":
            return "down"
        if health.skip_until > now or health.failures:
            return "degraded"
        return "ok"
