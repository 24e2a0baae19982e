"""The calls service: every call's core, the effects it asks for, and timers (the local
actions commands ask for are in actions.py).

Each local action and each inbound batch runs in one store transaction: the core's
effects (outbox rows, agent events, transcript entries, saved state) commit together or
not at all; on failure the calls are read back from the database so memory never holds
what did not happen. Publishing starts only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import clock
from ..config import Config
from ..paths import HomePaths
from ..protocol import wire
from ..protocol.call import (
    ACTIVE,
    ENDED,
    INCOMING,
    OUTGOING,
    REORDER_WINDOW,
    RETRY_AFTER_END,
    RINGING,
    Call,
    CallError,
    EndedBy,
    Limits,
)
from ..protocol.events import (
    Acked,
    AgentEvent,
    Deliver,
    Dropped,
    Effect,
    FileComplete,
    Retransmit,
    Roster,
    Transmit,
    WriteChunk,
)
from ..protocol.limits import InboundGate, RingCounts
from ..sanitize import clean_text
from ..schema import esc_id
from ..store import Store
from .directory import Directory, npub_of
from .files import FileSink
from .held import HeldMessages
from .inbound import WRAP_LOOKBACK
from .inbox import AgentInbox, agent_event
from .outbound import Outbound
from .owner import ESCALATION_TAG
from .records import Records

log = logging.getLogger("p2p.calls")

POLICY_REJECT_REASON = "not accepting calls right now"
FS_REQUIRED_REASON = "this agent takes only calls with forward secrecy"
SEEN_MARGIN = 3600.0  # keep processed wrap ids this much past the lookback


class CallHooks(Protocol):
    """What the group layer (daemon/groups.py) adds, called inside the transaction."""

    def ring_in(self, call: Call, message: wire.WireMessage, now: float) -> None: ...

    def deliver(
        self, call: Call, kind: AgentEvent, fields: dict[str, Any], now: float
    ) -> list[Awaitable[None]] | None: ...

    def roster(self, call: Call, body: dict[str, Any], now: float) -> list[Awaitable[None]]: ...

    def hidden(self, call: Call) -> bool: ...

    def load(self) -> None: ...


class CallService:
    """Owns the calls: applies the core's effects through the parts that carry them out."""

    def __init__(
        self,
        paths: HomePaths,
        config: Config,
        store: Store,
        outbound: Outbound,
        inbox: AgentInbox,
        directory: Directory,
        gate: InboundGate,
        owner: str | None,
        me: tuple[str, str] = ("", ""),
        on_change: Callable[[], None] | None = None,
        hooks: Callable[[CallService], CallHooks] | None = None,
    ) -> None:
        """``me``: our (name, npub) for records; ``on_change``: told after each commit that
        changed a call; ``hooks``: makes the group layer over this service (builder.py)."""
        self.config = config
        self.store = store
        self.outbound = outbound
        self.inbox = inbox
        self.directory = directory
        self.gate = gate
        self.files = FileSink(paths)
        self.records = Records(paths, store, outbound, me, config.keep_transcripts)
        self.owner = owner
        self.limits = Limits(config.max_message_bytes, config.max_file_bytes, config.ring_timeout)
        self.calls: dict[str, Call] = {}
        self.peer_names: dict[str, str] = {}
        self.blocked: set[str] = store.blocked()
        self.contacts: set[str] = {pubkey for pubkey, _ in store.contacts()}
        self.dropped: dict[str, int] = {}  # inbound messages refused here, by reason
        self._timed: set[str] = set()  # calls with a ring timer or unreceipted messages
        self.held = HeldMessages(store, gate.limits.max_held_bytes)
        self._known: set[str] = set()  # peers of calls we placed or answered
        self._peers: set[str] = set()  # peers of any call we have
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        self.on_change = on_change
        self.hooks = hooks(self) if hooks is not None else None

    # Loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Every call as saved, with its unreceipted messages and held out-of-order ones."""
        self.calls, self.peer_names, self._timed = {}, {}, set()
        self.outbound.secrecy.load()
        now = clock.now()
        for core, peer_name in self.store.load_calls():
            try:
                call = Call.from_dict(core)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("call %s has unreadable saved state (%s); left out", core.get("id"), exc)
                continue
            self.calls[call.id] = call
            self.peer_names[call.id] = peer_name
            if core.get("name_verified") is False:
                self.records.unverified.add(call.id)
        unacked = self.store.outbox_unacked()
        for call_id, (seqs, _) in unacked.items():
            if call_id in self.calls:
                self.calls[call_id].restore_pending(seqs, now)
        self.outbound.load({call_id: queued for call_id, (_, queued) in unacked.items()})
        self.held.load(self.calls)
        for call in self.calls.values():
            self._track(call)
        self.sweep_partials(now)

    def sweep_partials(self, now: float) -> None:
        """Remove partial files no transfer will finish: of calls this home no longer
        knows, of transfers a call gave up, and of calls ended longer ago than a peer goes
        on re-sending (two days)."""
        in_progress = {
            call.id: set(call.files)
            for call in self.calls.values()
            if call.state != ENDED or now - (call.ended_at or now) <= RETRY_AFTER_END + SEEN_MARGIN
        }
        try:
            self.files.sweep(in_progress)
        except OSError as exc:
            log.warning("could not remove stale partial files: %s", exc)

    def reload(self) -> None:
        """After a failed transaction: forget memory, trust the database."""
        self.load()
        if self.hooks is not None:
            self.hooks.load()

    def register(self, call: Call, peer_name: str) -> None:
        """Take a call opened here (placed, or a group's session) into the registry, before
        the transaction that saves it; `forget` takes it out again if that one fails."""
        self.calls[call.id] = call
        self.peer_names[call.id] = peer_name

    def forget(self, call_id: str) -> None:
        """Undo `register`: the call's first transaction failed, nothing of it was saved."""
        self.calls.pop(call_id, None)
        self.peer_names.pop(call_id, None)
        self._timed.discard(call_id)

    def _track(self, call: Call) -> None:
        self._peers.add(call.peer)
        if call.direction == OUTGOING or call.answered_at is not None:
            self._known.add(call.peer)
        if call.pending or call.state == RINGING:
            self._timed.add(call.id)
        else:
            self._timed.discard(call.id)

    # Timers ---------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Fire ring timeouts and retransmits when due; never dies of one failure."""
        while True:
            deadlines = [
                d for cid in self._timed if (d := self.calls[cid].next_deadline()) is not None
            ]
            delay = max(0.0, min(deadlines) - clock.now()) if deadlines else SEEN_MARGIN
            self._wake.clear()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                    continue  # something changed: look at the deadlines again, tick if due
                except TimeoutError:
                    pass
            try:
                self.tick(clock.now())
            except Exception:
                log.exception("timers failed; retrying in a second")
                self.reload()
                await asyncio.sleep(1.0)

    def tick(self, now: float) -> None:
        work: list[Awaitable[None]] = []
        with self.store.transaction():
            if now - self._pruned_at > SEEN_MARGIN:
                self.store.prune_seen(now - WRAP_LOOKBACK - SEEN_MARGIN)
                self._pruned_at = now
                self.store.after_commit(lambda: self.sweep_partials(now))
            for call_id in list(self._timed):
                call = self.calls[call_id]
                deadline = call.next_deadline()
                if deadline is not None and deadline <= now:
                    work += self.apply(call, call.tick(now), now)
        self.publish(work)

    def peer_seen(self, pubkey: str, now: float) -> None:
        """The peer announced itself after a silence: re-send at once what waited."""
        window = self.config.effective_liveness_window
        if not self.directory.came_back(pubkey, now, window):
            return
        for call_id in self._timed:
            call = self.calls[call_id]
            if call.peer == pubkey and call.nudge(now):
                self._wake.set()

    def publish(self, work: list[Awaitable[None]]) -> None:
        self.outbound.run(work)

    # Inbound (called by `Inbound` inside its transaction) ------------------------------

    def receive(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]:
        call = self.calls.get(message.call)
        if call is None:
            return self._ring_in(sender, message, sent_at, now)
        if call.peer != sender:
            log.warning("dropped %s for call %s from a key not in it", message.type, call.id[:8])
            self._count("not_in_call")
            return []
        held_before = bool(call.reorder)
        content = message.encode() if message.seq > call.recv_next else ""
        may_hold = self.held.room_for(len(content))
        effects = call.receive(message, now, may_hold)
        if message.type == "accept" and call.forward_secrecy:
            self.outbound.secrecy.accepted(call, message)
        elif (
            message.type == "accept"
            and call.state == ACTIVE
            and self.config.require_forward_secrecy
        ):
            log.info("call %s: the peer answered without forward secrecy; ended", call.id[:8])
            self.store.add_entry(call.id, now, "out", "call_ended", {"reason": FS_REQUIRED_REASON})
            effects += call.end(FS_REQUIRED_REASON, now)
        if message.seq in call.reorder:  # out of order: held durably until the gap fills
            self.held.hold(call, message.seq, content)
        elif held_before:
            self.held.release(call)
        if call.ack_due:
            self.store.after_commit(lambda: self.outbound.owe_ack(call))
        return self.apply(call, effects, now)

    def out_of_reach(self, sender: str, message: wire.WireMessage) -> bool:
        """Whether `receive` would drop ``message`` for its order: too far ahead of its call,
        or ahead with no room (or no call state) to hold it. Inbound then fetches it again
        later instead of counting on the peer's re-sends."""
        call = self.calls.get(message.call)
        if call is None or call.peer != sender or message.type == "ack":
            return False
        gap = message.seq - call.recv_next
        if gap <= 0 or message.seq in call.reorder:
            return False
        if gap >= REORDER_WINDOW:
            return True
        return not (call.holds_out_of_order and self.held.room_for(len(message.encode())))

    def _ring_in(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]:
        if message.type != "request":
            log.info("dropped %s for unknown call %s", message.type, message.call[:8])
            self._count("unknown_call")
            return []
        refused = self.gate.admit_request(sender, self._ring_counts(sender), now)
        if refused:
            log.info("dropped call request from %s: %s", sender[:12], refused)
            return []
        try:
            call, effects = Call.ring_in(message, sender, sent_at, now, self.limits)
        except CallError as exc:
            log.info("dropped request from %s: %s", sender[:12], exc)
            return []
        self.calls[call.id] = call
        self.peer_names[call.id] = self.directory.peer_name(sender, message.body["name"])
        if not self.directory.announced(sender):
            self.records.unverified.add(call.id)  # its name is only its claim
        self.store.add_entry(call.id, sent_at, "in", "call_request", {"topic": call.topic})
        if not self._policy_allows(sender):
            log.info("call %s from %s refused by policy", call.id[:8], sender[:12])
            self._count("policy")
            effects = call.reject(POLICY_REJECT_REASON, now, by=EndedBy.POLICY)
            self.store.add_entry(call.id, now, "out", "call_rejected", {"reason": "call policy"})
        elif (
            call.state == RINGING
            and self.config.require_forward_secrecy
            and not (call.peer_level >= wire.FS_LEVEL and call.peer_ek)
        ):
            log.info("call %s from %s refused: no forward secrecy", call.id[:8], sender[:12])
            self._count("no_forward_secrecy")
            effects = call.reject(FS_REQUIRED_REASON, now, by=EndedBy.POLICY)
            self.store.add_entry(
                call.id, now, "out", "call_rejected", {"reason": FS_REQUIRED_REASON}
            )
        if self.hooks is not None and call.state == RINGING:
            self.hooks.ring_in(call, message, now)
        if call.ack_due:
            self.store.after_commit(lambda: self.outbound.owe_ack(call))
        return self.apply(call, effects, now)

    # Forward secrecy (daemon/secrecy.py), for `Inbound` ----------------------------------

    def opener(self, now: float, max_skip: int | None = None) -> Any:
        return self.outbound.secrecy.opener(now, max_skip)

    def flush_secrets(self, busy: set[str]) -> None:
        self.outbound.secrecy.flush(busy)

    def ratcheted(self, call_id: str, sender: str) -> bool:
        """Whether ``sender`` set up the ratchet in this call: then whatever it sends that
        carries content must come under it (a downgrade is refused)."""
        call = self.calls.get(call_id)
        return call is not None and call.peer == sender and call.forward_secrecy

    def duplicate(self, call_id: str, sender: str) -> bool:
        """A ratchet message already read came again: owe the receipt (it was lost)."""
        call = self.calls.get(call_id)
        if call is None or call.peer != sender:
            return False
        call.duplicate_seen()
        self.outbound.owe_ack(call)
        return True

    def peer_of(self, call_id: str) -> str | None:
        """The peer of call ``call_id``, None if we have no such call."""
        call = self.calls.get(call_id)
        return call.peer if call is not None else None

    def familiar(self, pubkey: str) -> bool:
        """Known (below), or in any call with us (one ringing here included), or blocked
        (its receipts still count): a key whose wraps are worth opening in full."""
        return self.known(pubkey) or pubkey in self._peers or pubkey in self.blocked

    def known(self, pubkey: str) -> bool:
        """A contact, or a peer of a call we placed or answered."""
        return pubkey in self.contacts or pubkey in self._known

    def _ring_counts(self, caller: str) -> RingCounts:
        stranger = not self.known(caller)
        ringing = strangers = from_caller = open_calls = 0
        for call in self.calls.values():
            if call.state == ENDED:
                continue
            rung_by_stranger = (
                call.state == RINGING and call.direction == INCOMING and not self.known(call.peer)
            )
            strangers += rung_by_stranger
            from_caller += rung_by_stranger and call.peer == caller
            if stranger or not rung_by_stranger:  # a known caller does not count them
                ringing += call.state == RINGING
                open_calls += 1
        return RingCounts(stranger, ringing, open_calls, strangers, from_caller)

    def receive_from_blocked(self, sender: str, message: wire.WireMessage) -> None:
        """A blocked peer's receipts still end our re-sends of the `end` that told it."""
        call = self.calls.get(message.call)
        if call is not None and call.peer == sender and call.state == ENDED:
            self.apply(call, call.receive_ack_only(message), clock.now())

    def owner_reply(self, text: str, now: float) -> None:
        """A NIP-17 message from our owner: an answer to the escalation it names, or the latest."""
        named = ESCALATION_TAG.search(text)
        found = self.store.escalation_for_reply(named.group(1) if named else None)
        escalation_id, call_id = found if found else (None, None)
        if escalation_id:
            self.store.mark_answered(escalation_id)
        text = clean_text(text)[: wire.TEXT_PART_BYTES]
        fields = {"escalation_id": esc_id(escalation_id), "text": text}
        owner_npub = npub_of(self.owner or "")
        self.inbox.emit(
            agent_event(AgentEvent.OWNER_REPLY, call_id, owner_npub, "owner", now, fields), now
        )
        call = self.calls.get(call_id or "")
        if call is not None:
            self.store.add_entry(call.id, now, "owner", "owner_reply", {"text": text})
            if call.state == ENDED:
                self.store.after_commit(
                    lambda: self.records.write_transcript(call, self.peer_names)
                )

    def peer_label(self, call: Call) -> tuple[str, bool]:
        """The peer's name, and whether it is its own announced one: a caller known only by
        its claim is named by its presence once that arrives."""
        if call.id in self.records.unverified and self.directory.announced(call.peer):
            self.records.unverified.discard(call.id)
            self.peer_names[call.id] = self.directory.peer_name(call.peer, "")
        return self.peer_names.get(call.id, ""), call.id not in self.records.unverified

    @property
    def _needs_secrecy(self) -> bool:
        return self.config.require_forward_secrecy

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _policy_allows(self, caller: str) -> bool:
        policy = self.config.call_policy
        return policy == "anyone" or (policy == "contacts" and caller in self.contacts)

    # Effects --------------------------------------------------------------------------

    def apply(self, call: Call, effects: list[Effect], now: float) -> list[Awaitable[None]]:
        """Carry out effects that touch disk now (in the caller's transaction); return the
        publishing still to do once it commits."""
        publishing: list[Awaitable[None]] = []
        for effect in effects:
            if isinstance(effect, Transmit):
                message = self.outbound.secrecy.on_transmit(call, effect.message)
                publishing.append(self.outbound.queue(call, message, now))
            elif isinstance(effect, Retransmit):
                publishing.append(self.outbound.retransmit(call, effect.seq))
            elif isinstance(effect, Acked):
                self.outbound.forget(call, effect.seqs)
            elif isinstance(effect, Deliver):
                publishing += self._deliver(call, effect.type, effect.fields, now)
            elif isinstance(effect, WriteChunk):
                self.files.write(call.id, effect)
            elif isinstance(effect, FileComplete):
                publishing += self._complete_file(call, effect, now)
            elif isinstance(effect, Dropped):
                log.info("call %s: %s", call.id[:8], effect.reason)
            elif isinstance(effect, Roster) and self.hooks is not None:
                publishing += self.hooks.roster(call, effect.body, now)
        if call.state == ENDED:
            self.held.release(call)
            self.outbound.secrecy.forget(call.id)  # our last messages are sealed already
            if not self.config.keep_transcripts:
                self.store.drop_entries(call.id)
        core = call.to_dict()
        if call.id in self.records.unverified:
            core["name_verified"] = False
        self.store.save_call(core, self.peer_names.get(call.id, ""), now)
        grouped = self.hooks is not None and self.hooks.hidden(call)  # its group writes one
        if (
            call.state == ENDED
            and not grouped
            and any(isinstance(e, Deliver | Transmit) for e in effects)
        ):
            self.store.after_commit(lambda: self.records.write_transcript(call, self.peer_names))
        self._track(call)
        self.store.after_commit(self._changed)
        return publishing

    def _changed(self) -> None:
        self._wake.set()
        if self.on_change is not None:
            self.on_change()

    def _complete_file(self, call: Call, done: FileComplete, now: float) -> list[Awaitable[None]]:
        fields = self.files.complete(call.id, done)
        if fields is None:
            effects = call.file_failed(
                done.seq, done.name, "the file failed its SHA-256 check", now
            )
        else:
            effects = call.file_verified(fields)
        return self.apply(call, effects, now)

    def _deliver(
        self, call: Call, kind: AgentEvent, fields: dict[str, Any], now: float
    ) -> list[Awaitable[None]]:
        if self.hooks is not None:
            handled = self.hooks.deliver(call, kind, fields, now)
            if handled is not None:  # a group session: the group layer told the agent
                return handled
        name, verified = self.peer_label(call)
        event = agent_event(kind, call.id, npub_of(call.peer), name, now, fields, verified)
        self.inbox.emit(event, now)
        if kind != AgentEvent.CALL_REQUEST:  # recorded when the call was created
            self.store.add_entry(call.id, now, "in", str(kind), fields)
        return []
