"""A model of each relay: what it announced (NIP-11), what it refused, and how fast it lets us go.

Pure bookkeeping with the clock passed in; the relay pool consults it before each publish
and reports each relay's answer (and its AUTH, CLOSED and NOTICE messages) to it. What is
learned is kept per relay and per kind, not per event: a relay that refused one presence
for lack of proof of work wants it on the next one too.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ...nostr import kinds
from ...nostr.nip11 import RelayLimits

# OK-false prefixes (NIP-01) after which re-sending the same event to that relay is futile.
# `auth-required` is not among them: the SDK authenticates and the next attempt goes through.
PERMANENT = ("invalid", "blocked", "pow", "restricted")
MAX_REMEMBERED_REFUSALS = 10_000

# Pacing learned from `rate-limited:` refusals: a first guess, then multiplicative decrease
# (once per burst of refusals) and a slow increase with each accepted event.
FIRST_RATE = 2.0  # events per second after the first refusal
MIN_RATE = 0.05
MAX_RATE = 200.0
GROWTH = 1.01
DECREASE = 0.6
DECREASE_SPACING = 1.0  # seconds: refusals of one burst count once
BUCKET = 3.0  # tokens a paced relay may spend at once

GIFT_WRAP_KIND = kinds.GIFT_WRAP
PRESENCE_KIND = kinds.PRESENCE
INBOX_LIST_KIND = kinds.INBOX_RELAYS

_POW = re.compile(r"(\d+)")
# How relays refuse an event for its size: strfry "invalid: event too large: N",
# nostr-rs-relay "message too large", nostr-relay "280 characters should be enough for
# anybody", others "too big", "too long", "exceeds ... size", "size limit", "payload".
_TOO_LARGE = re.compile(
    r"too (large|big|long)|exceed.*(size|length|limit)|size limit|max(imum)?[ _-]?"
    r"(event|message|content)[ _-]?(size|length)|payload|characters should be enough",
    re.IGNORECASE,
)
# Our own word for an event we did not send because it exceeds what a relay declared.
NOT_SENT_TOO_LARGE = "too large for this relay"
# Our own word for a large event a relay swallowed while it answered smaller ones.
INFERRED_TOO_LARGE = "too large (inferred)"
# Below this, no call message fits; a relay that claims so is not believed further.
MIN_LEARNED_LIMIT = 2048
# Events up to this size (JSON plus framing) every relay takes: they need no trial, and an
# inferred limit is never taken lower (nostr-relay's default is 4,096 content characters).
SAFE_SIZE = 4096


def refused_for_size(reason: str) -> bool:
    """Whether a relay's refusal says the event was too large (not our own skipping)."""
    return bool(_TOO_LARGE.search(reason)) and not reason.startswith(NOT_SENT_TOO_LARGE)


@dataclass
class Pacer:
    """A token bucket whose rate is learned; ``rate`` None means no limit seen yet."""

    rate: float | None = None
    tokens: float = BUCKET
    stamp: float = 0.0
    last_decrease: float = -1e9

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self.tokens = min(BUCKET, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is free, without taking it."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1.0 - self.tokens) / self.rate

    def reserve(self, now: float) -> float:
        """Take a token; the seconds to wait before using it (0: go now)."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def accepted(self) -> None:
        if self.rate is not None:
            self.rate = min(MAX_RATE, self.rate * GROWTH)

    def refused(self, now: float) -> None:
        if now - self.last_decrease < DECREASE_SPACING:
            return
        self.last_decrease = now
        self._refill(now)
        self.rate = FIRST_RATE if self.rate is None else max(MIN_RATE, self.rate * DECREASE)
        self.tokens = min(self.tokens, 0.0)


@dataclass
class Health:
    """What we know about one relay."""

    failures: int = 0
    skip_until: float = 0.0
    last_error: str = ""
    max_message_length: int | None = None
    limits: RelayLimits | None = None
    auth: str = ""  # "", "challenged", "ok", or "failed: <reason>"
    min_pow: int = 0
    created_at_floor: int | None = None  # seconds before now, learned or announced
    refused_kinds: dict[int, str] = field(default_factory=dict)
    closed: str = ""  # the last CLOSED reason for one of our subscriptions
    notice: str = ""
    rate_limited: int = 0
    pacer: Pacer = field(default_factory=Pacer)
    withholds_dms: bool | None = None  # from the self-addressed probe (`doctor`)
    size_refused: int | None = None  # the smallest event (bytes) it refused as too large
    muted_until: float = 0.0  # time.monotonic() until which we do not read it (it flooded us)
    connect_error: str = ""  # why a fresh connection fails now (relay_reach), "" if it works
    largest_taken: int = 0  # the largest event (bytes) it answered OK true
    taken_at: float = 0.0  # when it last answered OK true (time.time())
    notice_at: float = 0.0  # when it last sent a NOTICE
    refused: int = 0  # our events it refused (OK false, or swallowed as too large)

    def muted(self) -> bool:
        return self.muted_until > time.monotonic()

    def learn(self, limits: RelayLimits) -> None:
        """Take what the relay's NIP-11 document says."""
        self.limits = limits
        if limits.max_message_length:
            # What the relay refused outranks what it announces (refused_size).
            learned = self.max_message_length if self.size_refused else None
            self.max_message_length = min(limits.max_message_length, learned or 1 << 40)
        if limits.min_pow_difficulty:
            self.min_pow = max(self.min_pow, limits.min_pow_difficulty)
        if limits.created_at_lower_limit:
            self.created_at_floor = limits.created_at_lower_limit


def _prefix(reason: str) -> str:
    return reason.split(":", 1)[0].strip().lower()


class RelayHealth:
    """Per relay: backoff, pacing, refusals per kind; per event: permanent refusals."""

    def __init__(self) -> None:
        self.relays: dict[str, Health] = {}
        self._refused: OrderedDict[str, set[str]] = OrderedDict()

    def of(self, url: str) -> Health:
        return self.relays.setdefault(url, Health())

    def fits(self, url: str, size: int) -> bool:
        return (self.of(url).max_message_length or size) >= size

    def smallest_limit(self, urls: tuple[str, ...]) -> int | None:
        """The smallest message limit among ``urls`` (None: none announced)."""
        limits = [h for h in (self.of(u).max_message_length for u in urls) if h]
        return min(limits) if limits else None

    def proven(self, url: str) -> int:
        """The size (bytes) of event ``url`` surely takes: the largest it took, or what
        every relay takes."""
        return max(SAFE_SIZE, self.of(url).largest_taken)

    def refused_size(self, url: str, size: int, inferred: bool = False) -> int:
        """``url`` refused an event of ``size`` bytes (JSON plus framing) as too large.

        Its effective limit becomes at most ``size - 1``. If our model already said the
        event fits (what the relay announced, or what we learned), the model was wrong by
        an unknown amount: it drops by a quarter, so a few refusals reach the real limit
        instead of one byte at a time. A refusal we ``inferred`` (the relay swallowed the
        event, saying nothing we could pair with it) costs a slow timeout each: the limit
        drops at once to what it is known to take. Returns the limit now assumed."""
        health = self.of(url)
        health.size_refused = min(health.size_refused or size, size)
        known = health.max_message_length
        if inferred and (known is None or size <= known):
            limit = self.proven(url)
        elif known is None:
            limit = size - 1
        elif size <= known:
            limit = size * 3 // 4
        else:
            limit = known  # an event sized before we learned: nothing new
        health.max_message_length = max(MIN_LEARNED_LIMIT, min(limit, size - 1))
        return health.max_message_length

    def pow_for(self, urls: tuple[str, ...]) -> int:
        """The proof of work (bits) the most demanding of ``urls`` wants: for what must be
        on every relay (presence, inbox lists)."""
        return max((self.of(url).min_pow for url in urls), default=0)

    def pow_needed(self, urls: tuple[str, ...]) -> int:
        """The proof of work (bits) a wrap needs to reach at least one of ``urls``: none if
        any of them takes it without. Mining costs in proportion to the event's size (each
        try hashes it whole), minutes for a file chunk at 20 bits: it is worth skipping a
        demanding relay when the peer reads another."""
        return min((self.of(url).min_pow for url in urls), default=0)

    def targets(self, urls: tuple[str, ...], event_id: str, size: int, now: float) -> list[str]:
        """The relays worth sending this event to now (all of them rather than none)."""
        refused = self._refused.get(event_id, set())
        usable = [url for url in urls if url not in refused and self.fits(url, size)]
        ready = [url for url in usable if self.of(url).skip_until <= now]
        return ready or usable

    def record(
        self,
        url: str,
        event_id: str,
        error: str | None,
        now: float,
        kind: int | None = None,
        size: int = 0,
    ) -> None:
        health = self.of(url)
        if error is None:
            health.largest_taken = max(health.largest_taken, size)
            health.taken_at = now
        if error is None or _prefix(error) == "duplicate":
            health.failures = 0
            health.skip_until = 0.0
            health.pacer.accepted()
            if kind is not None:
                health.refused_kinds.pop(kind, None)
            return
        health.last_error = error
        reason = _prefix(error)
        if reason in (*PERMANENT, "rate-limited", "auth-required", "error"):
            health.refused += 1
        if reason == "pow":
            found = [int(n) for n in _POW.findall(error)]
            health.min_pow = max([health.min_pow, *[n for n in found if n <= 64]])
        elif reason == "blocked" and kind is not None and "kind" in error.lower():
            health.refused_kinds[kind] = error
        elif reason == "invalid" and "created_at" in error and "early" in error.lower():
            # A fresh wrap (dated now) is what the relay wants; remember a floor of ~1 h.
            health.created_at_floor = min(health.created_at_floor or 3600, 3600)
        elif reason == "auth-required":
            health.auth = health.auth or "challenged"
        if reason in PERMANENT:
            self._refused.setdefault(event_id, set()).add(url)
            self._refused.move_to_end(event_id)
            while len(self._refused) > MAX_REMEMBERED_REFUSALS:
                self._refused.popitem(last=False)
            return
        if reason == "rate-limited":
            health.rate_limited += 1
            health.pacer.refused(now)
            return
        health.failures += 1
        if health.failures >= 3:  # timeouts, "not connected", and the like
            health.skip_until = now + min(60.0, 2.0 ** (health.failures - 2))

    def describe(self, url: str, state: str, now: float) -> str:
        health = self.of(url)
        if state != "connected":
            return "down"
        if health.auth.startswith("failed"):
            return "auth failed"
        if health.muted():
            return "muted"
        if health.skip_until > now or health.failures:
            return "degraded"
        return "ok"

    def abilities(self, url: str, state: str) -> dict[str, str]:
        """What this relay does for us: receive, send and announce, each "yes" or why not."""
        health = self.of(url)
        if state != "connected":
            cause = f": {health.connect_error}" if health.connect_error else ""
            down = f"no ({state}{cause})"
            return {"receive": down, "send": down, "announce": down}
        auth_failed = f"no (AUTH {health.auth})" if health.auth.startswith("failed") else ""
        receive = auth_failed or ("no (withholds DMs)" if health.withholds_dms else "yes")
        if health.muted():
            left = health.muted_until - time.monotonic()
            receive = f"no (muted for {left:.0f} s more: it flooded us)"
        send = auth_failed or "yes"
        if GIFT_WRAP_KIND in health.refused_kinds:
            send = f"no (refuses kind {GIFT_WRAP_KIND}: {health.refused_kinds[GIFT_WRAP_KIND]})"
        elif health.pacer.rate is not None:
            send = f"paced ({health.pacer.rate * 60:.0f}/min, rate-limited)"
        announce = auth_failed or "yes"
        for kind in (PRESENCE_KIND, INBOX_LIST_KIND):
            if kind in health.refused_kinds:
                announce = f"no (refuses kind {kind}: {health.refused_kinds[kind]})"
        if health.min_pow and announce == "yes":
            announce = f"yes, with PoW {health.min_pow}"
        return {"receive": receive, "send": send, "announce": announce}

    def problems(self, url: str) -> list[str]:
        """Why this relay does not do all we need, in short phrases (empty: nothing known)."""
        health = self.of(url)
        found = []
        if health.auth.startswith("failed"):
            found.append(f"AUTH {health.auth}")
        if health.pacer.rate is not None:
            found.append(f"rate-limited (pacing at {health.pacer.rate * 60:.0f}/min)")
        for kind, reason in sorted(health.refused_kinds.items()):
            found.append(f"refuses kind {kind} ({reason})")
        if health.min_pow:
            found.append(f"PoW {health.min_pow} needed")
        if health.withholds_dms:
            found.append("withholds DMs (our own wrap never came back)")
        if health.size_refused:
            found.append(
                f"refused a {health.size_refused}-byte event as too large: "
                f"limit taken as {health.max_message_length} B"
            )
        if health.max_message_length and health.max_message_length < 40_000:
            found.append(f"small messages ({health.max_message_length} B): files go slowly")
        if health.closed and "auth" not in health.closed:
            found.append(f"closed our subscription: {health.closed}")
        return found
