"""A public-relay simulator: a policy proxy in front of a real relay, for the tests.

Public relays differ from our loopback relay in what they refuse and how they say it.
This proxy sits between clients and a real upstream relay (``p2p relay``) and applies
the policies deployed relays apply, one switch each, with each refusal worded the way
the relay it is modelled on words it:

- ``auth_read_kinds[=4,1059]``: strfry (``relay.auth.restrictedReadKinds`` with
  ``restrictReadToInvolvedPubkey``). A REQ is challenged only when *every* filter names
  only restricted kinds; otherwise restricted events are withheld without a word.
- ``nip42_dms``: nostr-rs-relay (``nip42_auth`` + ``nip42_dms``). AUTH is offered on
  connect; kinds 4, 44 and 1059 go only to the authenticated sender or first ``p``.
- ``auth_all``: khatru-based DM inbox relays (``policies.MustAuth``): every REQ and
  every EVENT needs AUTH first.
- ``rate_limit=N`` events per ``rate_window`` seconds (default 60) per connection, and
  ``rate_limit_ip=N`` shared by every connection from one IP (damus noteguard, whose
  budget is per source IP); ``rate_burst=B`` sets the bucket size (default N).
- ``max_filter_limit[=500]``: strfry ``relay.maxFilterLimit``, every filter's limit capped.
- ``limit_scrapers``: nostr-rs-relay; a REQ holding a filter of too little precision
  (ids count 2, authors/kinds/any tag 1 each, under 2 is a scraper) gets EOSE only.
- ``created_at_lower_limit=S`` / ``created_at_upper_limit=S``: strfry
  ``rejectEventsOlderThanSeconds`` / ``rejectEventsNewerThanSeconds``.
- ``min_pow=D``: NIP-13 leading zero bits of the id (nostr-sdk LocalRelay wording).
- ``max_message_length=B``: bytes of one whole websocket message (nostr-rs-relay wording);
  ``max_event_bytes=B``: bytes of the event JSON (strfry ``events.maxEventSize``).
- ``declared_max_message_length=B``: what NIP-11 announces as ``max_message_length``, whatever
  is enforced (strfry announces its websocket payload limit, 131072 by default, while
  ``maxEventSize`` refuses smaller events: a relay that advertises more than it accepts).
- ``blocked_kinds=K,K``: noteguard's kinds filter.
- ``shadow_drop=F``: that fraction of events is answered ``OK true`` and never stored
  (strfry write-policy ``shadowReject``); ``seed=N`` makes the choice repeatable.
- ``ignore_expiration``: NIP-40 not honoured: expired events are accepted and served.
- ``max_subscriptions=N``: strfry ``relay.maxSubsPerConnection``.

``GET /`` with ``Accept: application/nostr+json`` serves a NIP-11 document whose
``limitation`` matches the switches; ``GET /stats`` serves counters for the tests.

Run it alone: ``python tests/relaysim.py --upstream ws://127.0.0.1:N --policy rate_limit=8``
prints ``relaysim ready: ws://127.0.0.1:PORT``. In tests use `SimServer` (in-process,
asyncio), `RelaySim` (a subprocess) or `simulated_relay` (a fresh upstream relay too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# The kinds each relay family keeps private (strfry's default list; nostr-rs-relay's).
STRFRY_RESTRICTED_KINDS = frozenset({4, 1059})
NOSTR_RS_DM_KINDS = frozenset({4, 44, 1059})
AUTH_KIND = 22242
# nostr-rs-relay accepts an AUTH event up to ten minutes off the clock.
AUTH_MAX_SKEW = 600

# Values used when a numeric switch is given bare (``--policy max_filter_limit``).
BARE_DEFAULTS: dict[str, Any] = {
    "auth_read_kinds": ",".join(str(k) for k in sorted(STRFRY_RESTRICTED_KINDS)),
    "max_filter_limit": 500,
    "created_at_lower_limit": 6 * 3600,
    "created_at_upper_limit": 900,
    "min_pow": 20,
    "max_message_length": 16384,
    "max_event_bytes": 65536,
    "max_subscriptions": 20,
    "shadow_drop": 0.1,
}


BOOL_SWITCHES = frozenset({"nip42_dms", "auth_all", "limit_scrapers", "ignore_expiration"})
FLOAT_SWITCHES = frozenset({"rate_limit", "rate_limit_ip", "rate_window", "shadow_drop"})


def _kinds(value: str | Iterable[int]) -> frozenset[int]:
    if isinstance(value, str):
        return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
    return frozenset(int(k) for k in value)


@dataclasses.dataclass(frozen=True)
class Policies:
    """The switches of one simulated relay; every one is off by default."""

    auth_read_kinds: frozenset[int] = frozenset()
    nip42_dms: bool = False
    auth_all: bool = False
    rate_limit: float | None = None
    rate_limit_ip: float | None = None
    rate_burst: int | None = None
    rate_window: float = 60.0
    max_filter_limit: int | None = None
    limit_scrapers: bool = False
    created_at_lower_limit: int | None = None
    created_at_upper_limit: int | None = None
    min_pow: int | None = None
    max_message_length: int | None = None
    max_event_bytes: int | None = None
    declared_max_message_length: int | None = None
    blocked_kinds: frozenset[int] = frozenset()
    shadow_drop: float = 0.0
    ignore_expiration: bool = False
    max_subscriptions: int | None = None
    seed: int = 0

    @classmethod
    def build(cls, **switches: Any) -> Policies:
        """From keyword switches; ``True`` for a numeric switch means its usual value."""
        values: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in switches.items():
            if name not in fields:
                raise ValueError(f"unknown policy {name!r}; known: {', '.join(fields)}")
            if value is True and name in BARE_DEFAULTS:
                value = BARE_DEFAULTS[name]
            if name in ("auth_read_kinds", "blocked_kinds"):
                value = _kinds(value)
            elif name in BOOL_SWITCHES:
                value = value in (True, "1", "true", "yes", "on")
            elif name in FLOAT_SWITCHES:
                value = float(value)
            else:
                value = int(value)
            values[name] = value
        return cls(**values)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Policies:
        """From ``name`` or ``name=value`` strings, as on the command line."""
        switches: dict[str, Any] = {}
        for spec in specs:
            name, sep, value = spec.partition("=")
            switches[name.strip()] = value.strip() if sep else True
        return cls.build(**switches)

    def to_specs(self) -> list[str]:
        """The command-line form of the switches that are on."""
        specs = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                continue
            if isinstance(value, frozenset):
                value = ",".join(str(k) for k in sorted(value))
            specs.append(field.name if value is True else f"{field.name}={value}")
        return specs

    def nip11(self) -> dict[str, Any]:
        """The NIP-11 document a relay with these switches would publish."""
        limitation: dict[str, Any] = {
            "auth_required": self.auth_all,
            "restricted_writes": bool(self.auth_all or self.min_pow or self.blocked_kinds),
        }
        for key, value in (
            ("max_message_length", self.max_message_length),
            ("max_content_length", self.max_event_bytes),
            ("max_subscriptions", self.max_subscriptions),
            ("max_limit", self.max_filter_limit),
            ("min_pow_difficulty", self.min_pow),
            ("created_at_lower_limit", self.created_at_lower_limit),
            ("created_at_upper_limit", self.created_at_upper_limit),
        ):
            if value is not None:
                limitation[key] = value
        if self.declared_max_message_length is not None:
            limitation["max_message_length"] = self.declared_max_message_length
        nips = [1, 9, 11, 40, 59]
        if self.auth_read_kinds or self.nip42_dms or self.auth_all:
            nips.append(42)
        if self.min_pow:
            nips.append(13)
        return {
            "name": "relaysim",
            "description": "p2p-comm test relay simulating public-relay policies: "
            + (" ".join(self.to_specs()) or "none"),
            "software": "p2p-comm tests/relaysim.py",
            "version": "1",
            "supported_nips": sorted(nips),
            "limitation": limitation,
        }


def pow_bits(event_id: str) -> int:
    """NIP-13 difficulty: the number of leading zero bits of the event id."""
    bits = 0
    for char in event_id:
        nibble = int(char, 16)
        if nibble:
            return bits + (4 - nibble.bit_length())
        bits += 4
    return bits


def is_scraper(filters: list[dict[str, Any]]) -> bool:
    """nostr-rs-relay's rule: any filter scoring under 2 makes the whole REQ a scraper."""
    for item in filters:
        precision = 2 if "ids" in item else 0
        precision += ("authors" in item) + ("kinds" in item)
        precision += any(key.startswith("#") for key in item)
        if precision < 2:
            return True
    return False


def fully_restricted(filters: list[dict[str, Any]], restricted: frozenset[int]) -> bool:
    """strfry's rule: true only if every filter names kinds, all of them restricted."""
    if not restricted or not filters:
        return False
    return all(f.get("kinds") and set(f["kinds"]) <= restricted for f in filters)


def _tag_values(event: dict[str, Any], name: str) -> list[str]:
    return [t[1] for t in event.get("tags", []) if len(t) >= 2 and t[0] == name]


def expiration_of(event: dict[str, Any]) -> int | None:
    values = _tag_values(event, "expiration")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None


def matches(item: dict[str, Any], event: dict[str, Any]) -> bool:
    """NIP-01 filter matching (prefix ids/authors are not supported: exact only)."""
    if "ids" in item and event["id"] not in item["ids"]:
        return False
    if "authors" in item and event["pubkey"] not in item["authors"]:
        return False
    if "kinds" in item and event["kind"] not in item["kinds"]:
        return False
    if "since" in item and event["created_at"] < item["since"]:
        return False
    if "until" in item and event["created_at"] > item["until"]:
        return False
    for key, wanted in item.items():
        if key.startswith("#") and not set(_tag_values(event, key[1:])) & set(wanted):
            return False
    return True


def _normalise_relay_url(url: str) -> str:
    """As strfry compares the AUTH relay tag: no scheme, no path, lower case."""
    url = url.split("://", 1)[-1]
    for sep in "/?#":
        url = url.split(sep, 1)[0]
    return url.lower()


class TokenBucket:
    """``rate`` events per ``window`` seconds, at most ``burst`` at once."""

    def __init__(self, rate: float, window: float, burst: int | None) -> None:
        self.capacity = float(burst if burst is not None else max(rate, 1))
        self.per_second = rate / window
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def verify_signature(event: dict[str, Any]) -> bool:
    """Id and signature, checked by nostr-sdk (imported only when needed)."""
    import nostr_sdk as ns

    try:
        return bool(ns.Event.from_json(json.dumps(event)).verify())
    except Exception:
        return False


class Session:
    """One client connection, with its own connection to the upstream relay."""

    def __init__(self, sim: SimServer, client: ServerConnection, upstream: ClientConnection):
        self.sim = sim
        self.client = client
        self.upstream = upstream
        self.policies = sim.policies
        self.ip = str(client.remote_address[0]) if client.remote_address else "?"
        self.challenge = secrets.token_urlsafe(16)[:22]
        self.challenge_sent = False
        self.authed: str | None = None
        self.subs: dict[str, list[dict[str, Any]]] = {}
        # Per subscription, until EOSE: ids served, so expired-but-kept events are added once.
        self.stored_seen: dict[str, set[str]] = {}
        p = self.policies
        self.bucket = (
            TokenBucket(p.rate_limit, p.rate_window, p.rate_burst) if p.rate_limit else None
        )

    async def send(self, message: list[Any]) -> None:
        await self.client.send(json.dumps(message))

    async def offer_auth(self) -> None:
        """Send the challenge; strfry sends it once per connection, khatru on each refusal."""
        if self.challenge_sent and not self.policies.auth_all:
            return
        self.challenge_sent = True
        self.sim.count("auth_challenges")
        await self.send(["AUTH", self.challenge])

    # -- client to relay -------------------------------------------------------------

    async def from_client(self, raw: str | bytes) -> None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        p = self.policies
        if p.max_message_length is not None:
            size = len(text.encode())
            if size > p.max_message_length:
                # nostr-rs-relay (tungstenite capacity error): a NOTICE, no OK.
                self.sim.count("refused:message-too-large")
                await self.send(["NOTICE", f"message too large ({size} > {p.max_message_length})"])
                return
        try:
            message = json.loads(text)
            verb = message[0]
        except (ValueError, IndexError, KeyError, TypeError):
            await self.send(["NOTICE", "ERROR: bad msg: unparseable message"])
            return
        if verb == "EVENT" and len(message) >= 2 and isinstance(message[1], dict):
            await self.on_event(text, message[1])
        elif verb == "REQ" and len(message) >= 2:
            await self.on_req(message)
        elif verb == "CLOSE" and len(message) >= 2:
            self.subs.pop(str(message[1]), None)
            self.stored_seen.pop(str(message[1]), None)
            await self.upstream.send(text)
        elif verb == "AUTH" and len(message) >= 2 and isinstance(message[1], dict):
            await self.on_auth(message[1])
        else:
            await self.upstream.send(text)

    async def refuse(self, event_id: str, reason: str) -> None:
        self.sim.count("refused:" + reason.split(":", 1)[0])
        self.sim.count("refused")
        await self.send(["OK", event_id, False, reason])

    async def on_event(self, text: str, event: dict[str, Any]) -> None:
        p = self.policies
        event_id = str(event.get("id", "?"))
        kind = event.get("kind")
        created_at = event.get("created_at", 0)
        now = int(time.time())
        if p.auth_all and self.authed is None:
            await self.offer_auth()
            await self.refuse(event_id, "auth-required: all requests must be authenticated")
            return
        if p.max_event_bytes is not None:
            size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
            if size > p.max_event_bytes:
                await self.refuse(event_id, f"invalid: event too large: {size}")
                return
        if p.created_at_lower_limit is not None and created_at < now - p.created_at_lower_limit:
            await self.refuse(event_id, "invalid: created_at too early")
            return
        if p.created_at_upper_limit is not None and created_at > now + p.created_at_upper_limit:
            await self.refuse(event_id, "invalid: created_at too late")
            return
        if p.min_pow is not None and pow_bits(event_id) < p.min_pow:
            await self.refuse(event_id, f"pow: required a difficulty >= {p.min_pow}")
            return
        if kind in p.blocked_kinds:
            await self.refuse(event_id, "blocked: note kind is not allowed here")
            return
        if not self.sim.allow_rate(self):
            await self.refuse(event_id, "rate-limited: you are noting too much")
            return
        expiration = expiration_of(event)
        if p.ignore_expiration and expiration is not None:
            if not verify_signature(event):
                await self.refuse(event_id, "invalid: bad signature")
                return
            self.sim.keep(event)
            if expiration <= now:
                # The upstream would refuse it as expired; this relay does not care.
                self.sim.count("accepted")
                await self.send(["OK", event_id, True, ""])
                return
        if p.shadow_drop and self.sim.rng.random() < p.shadow_drop:
            if not verify_signature(event):
                await self.refuse(event_id, "invalid: bad signature")
                return
            self.sim.count("shadow_dropped")
            self.sim.count("accepted")
            await self.send(["OK", event_id, True, ""])
            return
        self.sim.count("forwarded")
        await self.upstream.send(text)

    async def on_req(self, message: list[Any]) -> None:
        p = self.policies
        sub_id = str(message[1])
        filters = [f for f in message[2:] if isinstance(f, dict)]
        self.sim.count("reqs")
        if p.auth_all and self.authed is None:
            await self.offer_auth()
            self.sim.count("closed:auth-required")
            await self.send(["CLOSED", sub_id, "auth-required: all requests must be authenticated"])
            return
        if self.authed is None and fully_restricted(filters, p.auth_read_kinds):
            await self.offer_auth()
            self.sim.count("closed:auth-required")
            await self.send(
                ["CLOSED", sub_id, "ERROR: auth-required: requested filter requires authentication"]
            )
            return
        if p.limit_scrapers and is_scraper(filters):
            self.sim.count("scraper_reqs")
            await self.send(["EOSE", sub_id])
            return
        if (
            p.max_subscriptions is not None
            and sub_id not in self.subs
            and len(self.subs) >= p.max_subscriptions
        ):
            self.sim.count("refused_subscriptions")
            await self.send(["NOTICE", "ERROR: too many concurrent REQs"])
            return
        if p.max_filter_limit is not None:
            cap = p.max_filter_limit
            filters = [{**f, "limit": min(int(f.get("limit", cap)), cap)} for f in filters]
        self.subs[sub_id] = filters
        if p.ignore_expiration:
            self.stored_seen[sub_id] = set()
        await self.upstream.send(json.dumps(["REQ", sub_id, *filters]))

    async def on_auth(self, event: dict[str, Any]) -> None:
        p = self.policies
        event_id = str(event.get("id", "?"))
        if p.auth_all:
            # khatru: one answer for every failure.
            failure = "error: failed to authenticate"
        elif p.nip42_dms:
            failure = "restricted: authentication error: {}"
        else:
            failure = "error: {}"
        problem = None
        if not (p.auth_all or p.nip42_dms or p.auth_read_kinds):
            problem = "relay needs serviceUrl to be configured before AUTH can work"
        elif p.auth_read_kinds and not p.nip42_dms and not self.challenge_sent:
            problem = "no auth status available for connection"
        elif event.get("kind") != AUTH_KIND:
            problem = "wrong event kind, expected 22242"
        elif not verify_signature(event):
            problem = "bad signature"
        elif abs(int(event.get("created_at", 0)) - time.time()) > AUTH_MAX_SKEW:
            problem = "created_at out of range"
        elif self.challenge not in _tag_values(event, "challenge"):
            problem = "challenge string mismatch"
        elif _normalise_relay_url(self.sim.url) not in {
            _normalise_relay_url(v) for v in _tag_values(event, "relay")
        }:
            problem = f"incorrect or missing relay tag, expected: {self.sim.url}"
        if problem:
            self.sim.count("auth_failed")
            await self.send(["OK", event_id, False, failure.format(problem)])
            return
        self.authed = str(event["pubkey"])
        self.sim.count("auth_ok")
        success = "successfully authenticated" if p.auth_read_kinds and not p.nip42_dms else ""
        await self.send(["OK", event_id, True, success])

    # -- relay to client -------------------------------------------------------------

    def may_read(self, event: dict[str, Any]) -> bool:
        """Whether this connection may see ``event`` under the read restrictions."""
        p = self.policies
        kind = event.get("kind")
        if p.auth_read_kinds and kind in p.auth_read_kinds:
            # strfry shouldSendToSubscriber, restrictReadToInvolvedPubkey on.
            if self.authed is None:
                return False
            if self.authed != event.get("pubkey") and self.authed not in _tag_values(event, "p"):
                return False
        if p.nip42_dms and kind in NOSTR_RS_DM_KINDS:
            recipients = _tag_values(event, "p")
            if self.authed is None or not recipients:
                return False
            if self.authed not in (recipients[0], event.get("pubkey")):
                return False
        return True

    async def from_upstream(self, raw: str | bytes) -> None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        p = self.policies
        filtering = p.auth_read_kinds or p.nip42_dms or p.ignore_expiration
        # Without read filtering only OKs need a look (for the counters): skip the rest unparsed.
        if not filtering and not text.startswith('["OK"'):
            await self.client.send(text)
            return
        message = json.loads(text)
        if message[0] == "EVENT" and len(message) >= 3:
            event = message[2]
            if not self.may_read(event):
                self.sim.count("withheld")
                return
            seen = self.stored_seen.get(str(message[1]))
            if seen is not None:
                seen.add(event["id"])
        elif message[0] == "EOSE" and p.ignore_expiration:
            sub_id = str(message[1])
            seen = self.stored_seen.pop(sub_id, set())
            for event in self.sim.kept_matching(self.subs.get(sub_id, []), seen):
                if self.may_read(event):
                    self.sim.count("served_expired")
                    await self.send(["EVENT", sub_id, event])
        elif message[0] == "OK" and len(message) >= 4:
            self.sim.count("accepted" if message[2] else "refused")
            if not message[2]:
                self.sim.count("refused:upstream")
        await self.client.send(text)


class SimServer:
    """The proxy in this process's event loop: ``async with SimServer(url, policies)``."""

    def __init__(
        self, upstream: str, policies: Policies | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.upstream = upstream
        self.policies = policies or Policies()
        self.host = host
        self.url = ""
        self.stats: Counter[str] = Counter()
        self.rng = random.Random(self.policies.seed)
        self._ip_buckets: dict[str, TokenBucket] = {}
        # Events with an expiration tag, kept when NIP-40 is ignored (latest per address).
        self._kept: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._server: Server | None = None

    def count(self, what: str) -> None:
        self.stats[what] += 1

    def allow_rate(self, session: Session) -> bool:
        p = self.policies
        if session.bucket is not None and not session.bucket.take():
            return False
        if p.rate_limit_ip:
            bucket = self._ip_buckets.get(session.ip)
            if bucket is None:
                bucket = TokenBucket(p.rate_limit_ip, p.rate_window, p.rate_burst)
                self._ip_buckets[session.ip] = bucket
            return bucket.take()
        return True

    def keep(self, event: dict[str, Any]) -> None:
        kind = int(event["kind"])
        if 10000 <= kind < 20000 or kind in (0, 3):
            key: tuple[Any, ...] = (kind, event["pubkey"])
        elif 30000 <= kind < 40000:
            key = (kind, event["pubkey"], next(iter(_tag_values(event, "d")), ""))
        else:
            key = (event["id"],)
        old = self._kept.get(key)
        if old is None or (old["created_at"], old["id"]) < (event["created_at"], event["id"]):
            self._kept[key] = event

    def kept_matching(self, filters: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
        """Expired events the upstream no longer serves, matching any of ``filters``."""
        now = time.time()
        found = []
        for event in self._kept.values():
            expiration = expiration_of(event)
            if event["id"] in seen or expiration is None or expiration > now:
                continue
            if any(matches(f, event) for f in filters):
                found.append(event)
        return found

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/stats"):
            return self._respond(dict(self.stats), "application/json")
        if "application/nostr+json" in request.headers.get("Accept", ""):
            return self._respond(self.policies.nip11(), "application/nostr+json")
        return None

    @staticmethod
    def _respond(document: dict[str, Any], content_type: str) -> Response:
        body = json.dumps(document).encode()
        headers = Headers(
            [
                ("Content-Type", content_type),
                ("Access-Control-Allow-Origin", "*"),
                ("Content-Length", str(len(body))),
            ]
        )
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    async def _handle(self, client: ServerConnection) -> None:
        try:
            upstream = await connect(self.upstream, max_size=None, compression=None)
        except OSError:
            await client.close(1011, "upstream relay unreachable")
            return
        session = Session(self, client, upstream)
        self.count("connections")
        if self.policies.nip42_dms:
            await session.offer_auth()

        async def pump_up() -> None:
            async for raw in upstream:
                await session.from_upstream(raw)

        relay_task = asyncio.create_task(pump_up())
        try:
            async for raw in client:
                await session.from_client(raw)
        except ConnectionClosed:
            pass
        finally:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await relay_task
            await upstream.close()

    async def start(self, port: int = 0) -> SimServer:
        self._server = await serve(
            self._handle,
            self.host,
            port,
            process_request=self._http,
            max_size=None,
            compression=None,
            # A client that vanished without a close handshake must not hold up a stop.
            close_timeout=1,
        )
        bound = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://{self.host}:{bound}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def http_url(ws_url: str) -> str:
    return "http" + ws_url[2:]


def fetch_json(url: str, accept: str = "application/json", timeout: float = 5.0) -> Any:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class RelaySim:
    """The simulator as a subprocess in front of ``upstream`` (a context manager)."""

    def __init__(self, upstream: str, policies: Policies | None = None) -> None:
        self.upstream = upstream
        self.policies = policies or Policies()
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 15.0) -> RelaySim:
        import select

        cmd = [sys.executable, str(Path(__file__).resolve()), "--upstream", self.upstream]
        for spec in self.policies.to_specs():
            cmd += ["--policy", spec]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("relaysim ready: "):
            self.stop()
            raise RuntimeError(f"relaysim did not start: {line!r}")
        self.url = line.split()[2]
        return self

    def stats(self) -> Counter[str]:
        return Counter(fetch_json(http_url(self.url) + "/stats"))

    def nip11(self) -> dict[str, Any]:
        document: dict[str, Any] = fetch_json(http_url(self.url), "application/nostr+json")
        return document

    def stop(self) -> None:
        from p2p_comm.harness import stop_process

        stop_process(self.proc)

    def __enter__(self) -> RelaySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def simulated_relay(**switches: Any) -> Iterator[RelaySim]:
    """A fresh ``p2p relay`` with a simulator in front, both stopped afterwards.

    ``sim.upstream`` is the relay's own URL, for setting the scene past the policies.
    """
    from p2p_comm.harness import RelayProcess

    relay = RelayProcess().start()
    try:
        with RelaySim(relay.url, Policies.build(**switches)) as sim:
            yield sim
    finally:
        relay.stop()


async def _main(upstream: str, policies: Policies, host: str, port: int) -> int:
    sim = await SimServer(upstream, policies, host).start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"relaysim ready: {sim.url} -> {upstream} ({' '.join(policies.to_specs())})", flush=True)
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="the real relay, ws://host:port")
    parser.add_argument("--policy", action="append", default=[], help="name or name=value")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.upstream, Policies.parse(args.policy), args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
