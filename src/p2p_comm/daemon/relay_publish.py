"""Publishing to relays: the targets worth sending to, pacing learned from refusals, and
what each relay answered (fed to the relay model in relay_health.py).

A mixin of `RelayPool` (nostr_io.py), which owns the connections.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nostr_sdk as ns

from .relay_health import NOT_SENT_TOO_LARGE, RelayHealth


@dataclass(frozen=True)
class PublishResult:
    """Which relays took an event, and why the others refused it."""

    event_id: str
    accepted: list[str]
    failed: dict[str, str]


class Publishing:
    """`RelayPool.publish` and what it needs; the pool sets these attributes."""

    urls: tuple[str, ...]
    writer: Any
    health: RelayHealth
    _relay_urls: dict[str, Any]

    async def _ensure_relays(self, urls: tuple[str, ...]) -> None:
        raise NotImplementedError

    async def publish(
        self,
        event: Any,
        relays: tuple[str, ...] | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
    ) -> PublishResult:
        """Send to ``relays`` (adding any we lack, write-only), or to all of ours.

        Relays that are backing off, refused this very event for good, or cannot take
        its size (NIP-11) are left out; their answers feed the relay model. Each relay is
        paced by the rate it taught us; one that answers ``rate-limited`` gets the same
        event again once it has a token (up to ``attempts`` tries), not a flood of them.
        """
        relays = relays or self.urls
        await self._ensure_relays(relays)
        event_id = event.id().to_hex()
        kind = event.kind().as_u16()
        # The size matters only where a relay declared a limit; serialising costs time.
        limited = any(self.health.of(url).max_message_length for url in relays)
        size = len(event.as_json()) + 64 if limited else 0  # + the ["EVENT", ...] framing
        targets = self.health.targets(relays, event_id, size, time.time())
        if not targets:
            why = {url: self._why_not(url, event_id, size) for url in relays}
            return PublishResult(event_id, [], why)
        accepted: list[str] = []
        failed: dict[str, str] = {}
        for _ in range(attempts):
            going = await self._pace(targets)
            output = await self.writer.send_event(
                event,
                target=ns.SendEventTarget.to([self._relay_url(url) for url in going]),
                ok_timeout=timedelta(seconds=timeout),
            )
            now = time.time()
            for relay_url in output.success:
                url = str(relay_url)
                accepted.append(url)
                failed.pop(url, None)
                self.health.record(url, event_id, None, now, kind)
            again = []
            for relay_url, reason in output.failed.items():
                url = str(relay_url)
                failed[url] = reason
                self.health.record(url, event_id, reason, now, kind)
                prefix = reason.split(":", 1)[0].strip().lower()
                if prefix in ("rate-limited", "auth-required"):
                    again.append(url)
            if not again:
                break
            targets = again
        return PublishResult(event_id=event_id, accepted=accepted, failed=failed)

    def _relay_url(self, url: str) -> Any:
        parsed = self._relay_urls.get(url)
        if parsed is None:
            parsed = self._relay_urls[url] = ns.RelayUrl.parse(url)
        return parsed

    def _why_not(self, url: str, event_id: str, size: int) -> str:
        if not self.health.fits(url, size):
            limit = self.health.of(url).max_message_length
            return f"{NOT_SENT_TOO_LARGE} ({size} > {limit} bytes)"
        return f"refused earlier: {self.health.of(url).last_error}"

    async def _pace(self, urls: list[str]) -> list[str]:
        """The relays of ``urls`` to send to now, waiting if none may take an event yet.

        A relay still waiting for a token is left out while another can take the event at
        once: one slow relay must not hold back the rest (the peer reads them all)."""
        while True:
            now = time.time()
            waits = {url: self.health.of(url).pacer.wait(now) for url in urls}
            ready = [url for url in urls if waits[url] <= 0]
            if ready:
                for url in ready:
                    self.health.of(url).pacer.reserve(now)
                return ready
            # Others may be waiting too: whoever wakes first takes the token, the rest look
            # again rather than all sending at once.
            await asyncio.sleep(min(min(waits.values()), 30.0))
