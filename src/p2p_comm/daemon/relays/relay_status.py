"""What `p2p status` (and `p2p doctor`) show of each relay: its connection, roles, the
relay model's judgement and what it taught us, from the pool's state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nostr_io import RelayPool


async def relay_states(pool: RelayPool) -> list[dict[str, Any]]:
    """One document per relay we read (announce and inbox relays), in the configured order."""
    relays = await pool.reader.relays()
    states = []
    for url, relay in relays.items():
        stats = relay.stats()
        latency = stats.latency()
        state = relay.status().name.lower()
        health = pool.health.of(str(url))
        rate = health.pacer.rate
        roles = pool.roles(str(url))
        abilities = pool.health.abilities(str(url), state)
        # A relay we do not use for a role is not judged on it.
        if "inbox" not in roles:
            abilities["receive"] = "not used (announce relay only)"
        if "announce" not in roles:
            abilities["announce"] = "not used (inbox relay only)"
        states.append(
            {
                "url": str(url),
                "roles": roles,
                "state": state,
                "health": pool.health.describe(str(url), state, time.time()),
                # Down, the cause of the failed connection says more than the last
                # refusal ("relay not connected" on every publish).
                "last_error": (
                    health.connect_error
                    if state != "connected" and health.connect_error
                    else health.last_error
                ),
                "max_message_length": health.max_message_length,
                "auth": health.auth,
                "min_pow": health.min_pow,
                "paced_per_min": round(rate * 60, 1) if rate else None,
                "rate_limited": health.rate_limited,
                "refused": health.refused,
                "problems": pool.health.problems(str(url)),
                **abilities,
                "attempts": stats.attempts(),
                "successes": stats.success(),
                "latency_ms": round(latency.total_seconds() * 1000, 1) if latency else None,
            }
        )
    return sorted(states, key=lambda s: pool.all.index(s["url"]) if s["url"] in pool.all else 99)
