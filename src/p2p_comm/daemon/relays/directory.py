"""Names and lookup: who an agent argument means, what to call a peer, whether it is back."""

from __future__ import annotations

import functools

import nostr_sdk as ns

from ...protocol.presence import MAX_NAME
from ...sanitize import clean_label, skeleton
from ..base.errors import CommandError
from .presence_service import PresenceService


@functools.lru_cache(maxsize=4096)
def npub_of(pubkey: str) -> str:
    """The bech32 form of a hex key (remembered: said on every send and every event)."""
    return str(ns.PublicKey.parse(pubkey).to_bech32())


def is_key(agent: str) -> bool:
    return agent.startswith("npub1") or (
        len(agent) == 64 and all(c in "0123456789abcdefABCDEF" for c in agent)
    )


class Directory:
    """Turns what the agent typed into keys, and keys into names it can read."""

    def __init__(self, presence: PresenceService) -> None:
        self.presence = presence
        # When each peer was last heard from (by our clock): a peer silent for longer than
        # the liveness window that speaks again has come back.
        self._heard: dict[str, float] = {}

    def resolve(self, agent: str, now: float) -> tuple[str, str]:
        """An npub, hex key or online agent name -> (hex pubkey, display name)."""
        agent = agent.strip()
        if is_key(agent):
            try:
                pubkey = str(ns.PublicKey.parse(agent).to_hex())
            except Exception:
                raise CommandError(
                    "unknown_agent", f"'{agent}' is not a valid npub or key."
                ) from None
            known = self.presence.lookup(pubkey)
            return pubkey, known.presence.name if known else npub_of(pubkey)[:16]
        wanted = skeleton(agent)
        matches = [p for p in self.presence.online(now) if skeleton(p.presence.name) == wanted]
        if not matches:
            raise CommandError(
                "unknown_agent",
                f"no online agent is called '{clean_label(agent, 64)}'; "
                "see 'p2p list', or call by npub.",
            )
        if len(matches) > 1:
            listed = "; ".join(f"{p.presence.name} {npub_of(p.pubkey)}" for p in matches)
            raise CommandError(
                "ambiguous_agent",
                f"several online agents are called that: {listed}. Call one by npub.",
            )
        return matches[0].pubkey, matches[0].presence.name

    def peer_name(self, pubkey: str, claimed: str) -> str:
        """The name a peer announced, else the one it claimed in its request (cleaned)."""
        known = self.presence.lookup(pubkey)
        return known.presence.name if known else clean_label(claimed, MAX_NAME) or "unknown"

    def announced(self, pubkey: str) -> bool:
        """Whether the peer announced a presence (its own signed name) that we took."""
        return self.presence.lookup(pubkey) is not None

    def came_back(self, pubkey: str, now: float, window: float) -> bool:
        """Record that ``pubkey`` was heard from; True if it had been silent for a window
        or more (so what waits for it on a long backoff should go out now)."""
        last = self._heard.get(pubkey)
        self._heard[pubkey] = now
        return last is not None and now - last > window
