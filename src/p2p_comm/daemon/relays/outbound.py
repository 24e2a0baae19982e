"""Outbound: wrap, publish, retransmit and receipt our call messages.

Every sequenced message is kept in the outbox (its content and rumor time) in the same
transaction as the state that produced it, until the peer receipts it. Each (re)send is
a fresh gift wrap of the same rumor with a recent ``created_at``: relays forward a new
event id to subscribers that already saw the old one, and a peer that was away finds it
inside its lookback window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nostr_sdk as ns

from ... import clock
from ...config import Config
from ...identity import Identity
from ...protocol import frag
from ...protocol.call import Call
from ...protocol.wire import WireMessage
from ...store import Store
from ..base.answers import when_answered
from .lanes import LaneKeys
from .mining_lane import FIRST_SEND, RECEIPT, RETRANSMIT, Lane
from .nostr_io import RelayPool, spawn
from .prekeys import Prekeys
from .presence_service import PresenceService
from .ratchet_wait import RatchetWait, in_order, nothing
from .relay_publish import PublishResult, fresh_wrap_helps, never_taken
from .secrecy import Secrecy
from .sizing import Sizes
from .wrap_sizes import gift_wrap, is_request, ratchet_wrap

log = logging.getLogger("p2p.outbound")

ACK_DELAY = 0.02  # coalesce receipts for a burst of inbound messages
PACED_ACK_DELAY = 0.5
PUBLISH_CONCURRENCY = 16
SENT_FLUSH_DELAY = 0.05
POW_RESEND_MIN, POW_RESEND_FACTOR, POW_RESEND_MAX = 5.0, 8.0, 60.0
FRAGMENT_ROUNDS = 4  # cuts finer at once while relays refuse pieces (each: limit -25 % or more)


class Outbound:
    """Publishes for every call; remembers what no relay has taken yet."""

    def __init__(
        self,
        config: Config,
        identity: Identity,
        pool: RelayPool,
        presence: PresenceService,
        store: Store,
        on_undeliverable: Callable[[Call, int, str], None] | None = None,
        prekeys: Prekeys | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.pool = pool
        self.presence = presence
        self.store = store
        self.secrecy = Secrecy(
            store, identity.public_hex, prekeys, lambda peer: presence.prekey_of(peer)
        )
        self.unsent: dict[str, set[int]] = {}  # per call: seqs no relay has accepted yet
        self.ratchet_wait = RatchetWait(config, store, self.secrecy)
        self.retransmits = 0
        self._slots = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        self._ack_owed: dict[str, Call] = {}
        self._ack_handle: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.sizes = Sizes(lambda: self.pool, identity.keys)
        self._in_flight: set[tuple[str, int]] = set()
        self._reported: set[tuple[str, int]] = set()
        self._sent_later: list[tuple[str, int]] = []
        self._mining = Lane()
        self.lane_keys = LaneKeys(store, identity.keys, clock.now(), config.call_lanes)
        self.pow_seconds = 0.0  # recent mining time per wrap (moving average), for `status`
        self.mined = 0
        self._published_at: dict[tuple[str, int], float] = {}  # under PoW only
        self._fragmented: set[tuple[str, int]] = set()  # sent as `frag` pieces from now on
        # How a message no relay will ever take reaches the agent.
        self.on_undeliverable = on_undeliverable

    # Sizes ------------------------------------------------------------------------------

    def peer_relays(self, call: Call) -> tuple[str, ...]:
        return self.presence.inbox_relays(call.peer) or self.config.relays

    def chunk_bytes(self, call: Call) -> int:
        """The largest file chunk whose wrap fits every inbox relay of the peer."""
        return self.sizes.chunk_bytes(self.peer_relays(call))

    def text_part_bytes(self, call: Call) -> int:
        """Text parts that fit too, even if every character doubles when JSON-escaped."""
        return self.sizes.text_part_bytes(self.peer_relays(call))

    def load(self, unsent: dict[str, set[int]]) -> None:
        self.unsent = unsent
        self.ratchet_wait.load()

    # Sending ------------------------------------------------------------------------------

    def queue(self, call: Call, message: WireMessage, now: float) -> Awaitable[None]:
        """Keep a sequenced message in the outbox (inside the caller's transaction) and
        return its first publication (wrap and publish), to run once that transaction has
        committed."""
        content = message.encode()
        # What waits goes first if the session can seal by now: the order is kept.
        earlier = self.release_waiting(call) if call.id in self.ratchet_wait.calls else []
        sealed = self.secrecy.seal(call, content, int(now))
        if sealed is None and self.ratchet_wait.waits(call, message):
            self.ratchet_wait.keep(call, message, content, now)
            return in_order(earlier) if earlier else nothing()
        self.store.outbox_put(call.id, message.seq, message.type, content, now, sealed)
        self.store.after_commit(lambda: self.unsent.setdefault(call.id, set()).add(message.seq))
        # The wrap is built by the publication, after the command has answered: the message
        # is durable once committed, and a group's send costs its commit, not a wrap per
        # recipient (the SDK holds the GIL while wrapping: a thread pool measured no
        # faster). A relay that wants proof of work gets a wrap mined in a thread.
        publication = self._publish(call, None, message.seq, content, int(now), sealed=sealed)
        return in_order([*earlier, publication])

    def release_waiting(self, call: Call) -> list[Awaitable[None]]:
        """Publish what waited for this call's ratchet, as far as it seals now."""
        released = self.ratchet_wait.release(call)
        seqs = [seq for seq, *_ in released]
        self.store.after_commit(lambda: self.unsent.setdefault(call.id, set()).update(seqs))
        return [
            self._publish(call, None, seq, content, rumor_at, sealed=sealed)
            for seq, content, rumor_at, sealed in released
        ]

    def _pow(self, call: Call) -> int:
        return self.pool.health.pow_needed(self.peer_relays(call))

    def _wrap(
        self,
        call: Call,
        content: str,
        rumor_at: int,
        pow_bits: int = 0,
        exact: bool = False,
        sealed: str | None = None,
        lane: Any = None,
    ) -> Any:
        keys = self.identity.keys  # ``lane``: the wrap's key from `LaneKeys` (None: fresh)
        if sealed is None:
            me = self.identity.public_hex
            return gift_wrap(keys, me, call.peer, content, rumor_at, pow_bits, exact, lane)
        # Our request to the callee's prekey names it (the only message that does).
        pre = call.prekey if is_request(call, content) else ""
        return ratchet_wrap(keys, call.id, call.peer, sealed, rumor_at, pow_bits, exact, pre, lane)

    def retransmit(self, call: Call, seq: int) -> Awaitable[None]:
        return self._republish(call, seq)

    async def _republish(self, call: Call, seq: int) -> None:
        if (call.id, seq) in self._in_flight:
            return  # still waiting for a paced relay: a second copy would only queue too
        last = self._published_at.get((call.id, seq))
        if last is not None and time.monotonic() - last < self._resend_floor(call):
            return  # the receipt may still be on its way (being mined at the peer)
        self.retransmits += 1
        content, legacy, rumor_at = self.store.outbox_message(call.id, seq)
        if content is not None:
            sealed, waiting = self.store.outbox_sealed(call.id, seq)
            if waiting:
                return  # not under the ratchet yet, and our agent requires it
            await self._publish(call, None, seq, content, int(rumor_at), RETRANSMIT, sealed)
        elif legacy is not None:  # kept by an older version: only its signed wrap exists
            await self._publish(call, ns.Event.from_json(legacy), seq)

    def forget(self, call: Call, seqs: tuple[int, ...]) -> None:
        """The peer receipted ``seqs`` (inside the caller's transaction)."""
        self.store.outbox_forget(call.id, seqs)
        unsent = self.unsent.get(call.id)
        if unsent:
            unsent.difference_update(seqs)
        self._fragmented.difference_update((call.id, seq) for seq in seqs)
        for seq in seqs:
            self._published_at.pop((call.id, seq), None)

    async def _publish(
        self,
        call: Call,
        event: Any,
        seq: int | None,
        content: str | None = None,
        rumor_at: int = 0,
        priority: int = FIRST_SEND,
        sealed: str | None = None,
    ) -> None:
        """Publish ``event``, or a wrap of ``content`` built here (of its ratchet
        ciphertext ``sealed``, made when it was queued, on a call with forward secrecy).
        A relay's refusal that a fresh wrap avoids (proof of work it now asks for, a
        ``created_at`` it finds too old) gets one fresh wrap at once, rather than a
        message stuck until retransmit. A
        sequenced message refused as too large goes as `frag` pieces that fit (peers of
        feature level 4; older ones get a `delivery_failed` event, as before)."""
        key = (call.id, seq if seq is not None else -1)
        self._in_flight.add(key)
        try:
            if seq is not None and content is not None and (call.id, seq) in self._fragmented:
                await self._publish_fragments(call, seq, content, rumor_at)
                return
            result, event = await self._send(call, event, content, rumor_at, priority, sealed)
            # Learned for every peer (later files are cut to fit); fragments only for peers
            # that join them.
            too_large = self.sizes.learn(result, event) and not result.accepted
            if (
                too_large
                and seq is not None
                and content is not None
                and frag.usable(call.peer_level)
            ):
                await self._publish_fragments(call, seq, content, rumor_at)
                return
        except Exception as exc:
            log.warning("call %s: publish failed, will retry: %s", call.id[:8], exc)
            if seq is not None:
                call.mark_published(seq, False)
            return
        finally:
            self._in_flight.discard(key)
        if seq is not None:
            call.mark_published(seq, bool(result.accepted))
        if result.failed:
            log.info("call %s seq %s refused by %s", call.id[:8], seq, result.failed)
        if seq is not None and not result.accepted and never_taken(result):
            self._undeliverable(call, seq, result)
        if seq is not None and result.accepted:
            if self._pow(call):
                self._published_at[(call.id, seq)] = time.monotonic()
            self._sent(call, seq)

    async def _send(
        self,
        call: Call,
        event: Any,
        content: str | None,
        rumor_at: int,
        priority: int,
        sealed: str | None = None,
    ) -> tuple[PublishResult, Any]:
        """One publication to the peer's relays, with one fresh wrap where that helps;
        returns the result and the event last published."""
        relays = self.peer_relays(call)
        for attempt in range(2):
            if event is None and content is not None:
                pow_bits = self._pow(call)
                exact = attempt > 0
                if pow_bits:
                    event = await self._mine(
                        call, content, rumor_at, pow_bits, exact, priority, sealed
                    )
                else:
                    lane = self.lane_keys.key_for(call.id, call.peer, clock.now())
                    event = self._wrap(call, content, rumor_at, 0, exact, sealed, lane)
            async with self._slots:
                result = await self.pool.publish(event, relays=relays)
            if result.accepted or content is None or not fresh_wrap_helps(result):
                break
            event = None
        return result, event

    async def _mine(
        self,
        call: Call,
        content: str,
        rumor_at: int,
        pow_bits: int,
        exact: bool,
        priority: int,
        sealed: str | None = None,
    ) -> Any:
        """A wrap with proof of work, mined in a thread, one at a time (each run uses every
        core). Receipts go first (the peer's re-sends wait on them), first sends, re-sends."""
        lane = self.lane_keys.key_for(call.id, call.peer, clock.now())  # it may write the store
        async with self._mining.turn(priority):
            started = time.monotonic()
            event = await asyncio.to_thread(  # the store is never touched in the thread
                self._wrap, call, content, rumor_at, pow_bits, exact, sealed, lane
            )
            spent = time.monotonic() - started
        self.mined += 1
        self.pow_seconds = spent if not self.pow_seconds else 0.8 * self.pow_seconds + 0.2 * spent
        return event

    def _resend_floor(self, call: Call) -> float:
        """Under proof of work, the least time between two publications of one message.

        The peer mines its receipt too: a re-send before it could have arrived costs
        another mining run and helps nothing, and re-sends that each slow the next are
        how a PoW relay turned a 20-message call into minutes of mining."""
        if not self._pow(call):
            return 0.0
        return min(POW_RESEND_MAX, max(POW_RESEND_MIN, POW_RESEND_FACTOR * self.pow_seconds))

    def _sent(self, call: Call, seq: int) -> None:
        unsent = self.unsent.get(call.id)
        if unsent and seq in unsent:
            unsent.discard(seq)
            self._mark_sent(call.id, seq)

    async def _publish_fragments(self, call: Call, seq: int, content: str, rumor_at: int) -> None:
        """Send message ``seq`` as `frag` pieces whose wraps fit the smallest limit among
        the peer's relays; cut finer at once while relays refuse pieces as too large. Every
        (re)transmission sends every piece: the receiver keeps partial messages in memory."""
        self._fragmented.add((call.id, seq))
        relays = self.peer_relays(call)
        for _ in range(FRAGMENT_ROUNDS):
            limit = self.pool.health.smallest_limit(relays)
            piece = self.sizes.fragment_bytes(limit) if limit else None
            try:
                if piece is None:
                    raise ValueError(f"not even a {frag.MIN_FRAGMENT_BYTES}-byte piece fits")
                pieces = frag.split_encoded(call.id, seq, content, piece)
            except ValueError as exc:
                self._report(call, seq, f"too large for the peer's relays ({limit} B): {exc}")
                return
            # Under the ratchet each piece is its own ratchet message, sealed now.
            encoded = [p.encode() for p in pieces]
            sealed = [self.secrecy.seal_now(call, e, rumor_at) for e in encoded]
            sent = await asyncio.gather(
                *(
                    self._send(call, None, e, rumor_at, FIRST_SEND, s)
                    for e, s in zip(encoded, sealed, strict=True)
                )
            )
            if all(result.accepted for result, _ in sent):
                log.info("call %s seq %s sent in %d fragments", call.id[:8], seq, len(pieces))
                self._sent(call, seq)
                return
            if not any([self.sizes.learn(result, event) for result, event in sent]):
                failed = {url: why for result, _ in sent for url, why in result.failed.items()}
                log.info("call %s seq %s: fragments refused by %s", call.id[:8], seq, failed)
                return  # not for size: the next retransmission tries again

    def _mark_sent(self, call_id: str, seq: int) -> None:
        """Record that a relay took it, with others taken in the same moment: one commit
        for a burst rather than one per message (it is only a status for `status` and a
        restart; memory already knows)."""
        if not self._sent_later:
            asyncio.get_running_loop().call_later(SENT_FLUSH_DELAY, self._flush_sent)
        self._sent_later.append((call_id, seq))

    def _flush_sent(self) -> None:
        sent, self._sent_later = self._sent_later, []
        try:
            with self.store.transaction():
                for call_id, seq in sent:
                    self.store.outbox_mark_sent(call_id, seq)
        except Exception as exc:  # the send itself held; only the record of it is missing
            log.warning("cannot record %d message(s) as sent: %s", len(sent), exc)

    def _undeliverable(self, call: Call, seq: int, result: PublishResult) -> None:
        reason = "; ".join(f"{url} {why}" for url, why in sorted(result.failed.items()))
        self._report(call, seq, reason)

    def _report(self, call: Call, seq: int, reason: str) -> None:
        """Tell the agent once that no relay of the peer will ever take this message."""
        if (call.id, seq) in self._reported or self.on_undeliverable is None:
            return
        self._reported.add((call.id, seq))
        log.warning("call %s seq %s cannot be delivered: %s", call.id[:8], seq, reason)
        self.on_undeliverable(call, seq, f"no relay of the peer takes it: {reason}")

    def delivery(self, call: Call) -> dict[str, int]:
        """Counts for this call's sequenced messages, without touching the database."""
        queued = len(self.unsent.get(call.id, ()))
        return {
            "queued": queued,
            "sent": max(0, call.unacked - queued),
            "delivered": call.delivered - call.refused,
            "refused": call.refused,
            "unacked": call.unacked,
        }

    # Receipts -----------------------------------------------------------------------------

    def owe_ack(self, call: Call) -> None:
        """Send a bare receipt soon unless an outgoing message carries it first."""
        self._ack_owed[call.id] = call
        if self._ack_handle is None:
            loop = asyncio.get_running_loop()
            # Under a relay's rate limit a bare receipt costs a message's slot: gather more.
            # Under proof of work too: each receipt is a mining run.
            relays = self.peer_relays(call)
            paced = any(self.pool.health.of(url).pacer.rate for url in relays) or bool(
                self.pool.health.pow_needed(relays)
            )
            delay = PACED_ACK_DELAY if paced else ACK_DELAY
            self._ack_handle = loop.call_later(delay, self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_handle = None
        owed, self._ack_owed = self._ack_owed, {}
        for call in owed.values():
            ack = call.take_ack()
            if ack is not None:
                receipt = self._publish(call, None, None, ack.encode(), int(clock.now()), RECEIPT)
                self.run([receipt])

    def run(self, work: list[Awaitable[None]]) -> None:
        """Start publications in the background (their failures are logged, not raised);
        those of a command once its answer is written (`answers.when_answered`)."""
        if work:
            when_answered(lambda: self._start(work))

    def _start(self, work: list[Awaitable[None]]) -> None:
        for item in work:
            task = spawn(item, "publish")  # type: ignore[arg-type]
            self._background.add(task)
            task.add_done_callback(self._background.discard)
