"""The calls service: the registry of every call's core, and the effects the cores ask for.

Messages from inbound come in through call_intake.py, deadlines through call_timers.py;
the local actions commands ask for are in actions.py.

Each local action and each inbound batch runs in one store transaction: the core's
effects (outbox rows, agent events, transcript entries, saved state) commit together or
not at all; on failure the calls are read back from the database so memory never holds
what did not happen. Publishing starts only after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ... import clock
from ...config import Config
from ...paths import HomePaths
from ...protocol import wire
from ...protocol.call import (
    ENDED,
    OUTGOING,
    RETRY_AFTER_END,
    RINGING,
    Call,
    Limits,
)
from ...protocol.events import (
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
from ...protocol.limits import InboundGate
from ...store import Store
from ..notify.inbox import AgentInbox, agent_event
from ..relays.directory import Directory, npub_of
from ..relays.outbound import Outbound
from .call_intake import CallIntake
from .call_timers import SEEN_MARGIN, CallTimers
from .file_sink import FileSink
from .held import HeldMessages
from .records import Records

log = logging.getLogger("p2p.calls")


class CallHooks(Protocol):
    """What the group layer (daemon/calls/groups.py) adds, called inside the transaction."""

    def ring_in(self, call: Call, message: wire.WireMessage, now: float) -> None: ...

    def deliver(
        self, call: Call, kind: AgentEvent, fields: dict[str, Any], now: float
    ) -> list[Awaitable[None]] | None: ...

    def roster(self, call: Call, body: dict[str, Any], now: float) -> list[Awaitable[None]]: ...

    def ratchet_ready(self, call: Call, now: float) -> list[Awaitable[None]]: ...

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
        self.timed: set[str] = set()  # calls with a ring timer or unreceipted messages
        self.held = HeldMessages(store, gate.limits.max_held_bytes)
        self.known_peers: set[str] = set()  # peers of calls we placed or answered
        self.call_peers: set[str] = set()  # peers of any call we have
        self.timers = CallTimers(self)
        self.intake = CallIntake(self)  # inbound's way in (daemon/relays/inbound.py)
        self.on_change = on_change
        self.hooks = hooks(self) if hooks is not None else None

    # Loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Every call as saved, with its unreceipted messages and held out-of-order ones."""
        self.calls, self.peer_names, self.timed = {}, {}, set()
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
        self.timed.discard(call_id)

    def _track(self, call: Call) -> None:
        self.call_peers.add(call.peer)
        if call.direction == OUTGOING or call.answered_at is not None:
            self.known_peers.add(call.peer)
        if call.pending or call.state == RINGING:
            self.timed.add(call.id)
        else:
            self.timed.discard(call.id)

    async def run_timers(self) -> None:
        """Fire ring timeouts and retransmits when due (`CallTimers.run`)."""
        await self.timers.run()

    def peer_seen(self, pubkey: str, now: float) -> None:
        """The peer announced itself after a silence (`CallTimers.peer_seen`)."""
        self.timers.peer_seen(pubkey, now)

    def publish(self, work: list[Awaitable[None]]) -> None:
        self.outbound.run(work)

    def peer_label(self, call: Call) -> tuple[str, bool]:
        """The peer's name, and whether it is its own announced one: a caller known only by
        its claim is named by its presence once that arrives."""
        if call.id in self.records.unverified and self.directory.announced(call.peer):
            self.records.unverified.discard(call.id)
            self.peer_names[call.id] = self.directory.peer_name(call.peer, "")
        return self.peer_names.get(call.id, ""), call.id not in self.records.unverified

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
        self.timers.wake()
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
