"""Unwrap and check: one gift wrap from a relay to a `Taken` call message, or a reason.

A wrap is opened past its first layer, then its seal only if its sender is someone we
know or the strangers' budget allows it. The message must be of our kind, well formed,
sealed the way its call set up (no downgrade from the ratchet), and lead to a call we
have (or ring one); pieces of a message too large for a relay are reassembled here. What
leads nowhere is junk (waste.py); what is over its sender's byte budget waits, opened
(budget.py). Taking the results, in one transaction, is inbound.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ... import clock
from ...nostr import kinds, nip59
from ...protocol import frag, ratchet, wire
from ...protocol.limits import InboundGate, RecentIds
from .budget import BudgetWait
from .nostr_io import InboundEvent
from .secrecy import RATCHETED_TYPES, header_n
from .waste import Waste

log = logging.getLogger("p2p.inbound")

# A ratchet seal that would make its session skip more message keys than this is read
# later, by a catch-up that sorts such seals by message number first: wraps come in the
# relay's order (newest first, jittered), and reading a long backlog in that order would
# overflow the session's skipped keys (docs/PROTOCOL.md 3.12.4) and lose messages.
IN_ORDER_SKIP = 64


@dataclass(frozen=True)
class Taken:
    """An unwrapped call message, ready for the core."""

    wrap_id: str
    sender: str
    message: wire.WireMessage | None  # None: a NIP-17 message from our owner
    sent_at: int
    owner_text: str = ""

    def order(self) -> tuple[str, int]:
        return (self.message.call, self.message.seq) if self.message else ("", 0)


class CallSink(Protocol):
    """What inbound needs from the calls service."""

    @property
    def blocked(self) -> set[str]: ...

    @property
    def owner(self) -> str | None: ...

    def peer_of(self, call_id: str) -> str | None: ...

    def familiar(self, pubkey: str) -> bool: ...

    def lane_calls(self) -> list[tuple[str, str]]: ...

    def receive(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]: ...

    def receive_from_blocked(self, sender: str, message: wire.WireMessage) -> None: ...

    def out_of_reach(self, sender: str, message: wire.WireMessage) -> bool: ...

    def owner_reply(self, text: str, now: float) -> None: ...

    def reload(self) -> None: ...

    def opener(self, now: float, max_skip: int | None = None) -> nip59.Opener: ...

    def flush_secrets(self, busy: set[str]) -> None: ...

    def ratcheted(self, call_id: str, sender: str, seq: int) -> bool: ...

    def ratchet_read(self, call_id: str, sender: str, seq: int) -> None: ...

    def duplicate(self, call_id: str, sender: str) -> bool: ...

    def publish(self, work: list[Awaitable[None]]) -> None: ...


class Unwrapper:
    """Opens and checks wraps for `Inbound`; holds what that needs between wraps."""

    def __init__(
        self,
        keys: Any,
        gate: InboundGate,
        sink: CallSink,
        waste: Waste,
        stats: dict[str, Any],
        schedule_catch_up: Callable[[], None],
        take_released: Callable[[list[Any]], None],
    ) -> None:
        self.keys = keys
        self.gate = gate
        self.sink = sink
        self.waste = waste
        self.stats = stats
        self.schedule_catch_up = schedule_catch_up
        # Pieces of messages too large for a relay (`frag`), until each message is whole.
        self.fragments = frag.Reassembler()
        # (sender, call) of requests unwrapped lately: a message of a call whose request
        # is in the same batch or catch-up leads somewhere, though the call is not made yet.
        self._requested = RecentIds(4096)
        # Wraps opened, then found over their sender's byte budget (see budget.py).
        self.deferred = BudgetWait(self.gate, self._opened, take_released)
        # Ratchet seals read (their keys now gone) and not yet taken, by wrap id, with their
        # call: another path that meets the same wrap meanwhile must not take it for a
        # duplicate and mark it, and the call's ratchet state is not written while any is
        # pending (a crash before it is taken must leave a state that reads it again).
        self.reading: dict[str, str] = {}

    def _worth_opening(
        self, sender: str, event: InboundEvent, now: float, live: bool
    ) -> bool | None:
        """Whether to open the seal of a wrap that claims ``sender``: always for a key we
        have a call with (or know, or blocked) and for the owner (True); for anyone else
        within the strangers' budget (`InboundGate.admit_stranger`; None: a stranger's),
        so fresh keys by the thousand cost one decryption each and never hold up a known
        peer's wraps."""
        if sender == self.sink.owner or self.sink.familiar(sender):
            return True
        if self.gate.admit_stranger(now):
            return None
        self.waste.turned_away(event, now, live)
        return False

    def _strangers_junk(self, gift: nip59.Unwrapped) -> tuple[str, str] | None:
        """Why a stranger's rumor, its seal's signature not yet checked, leads nowhere (a
        reason and a detail for the log); None if it may lead somewhere (a call request, or
        a message of a call whose request came just before). What leads nowhere is junk
        whoever signed it: its signature, a third of a full open's cost, is not checked."""
        if gift.kind != kinds.CALL:
            return "not_our_kind", f"kind {gift.kind} from {gift.sender[:12]}"
        try:
            message = wire.decode(gift.content)
        except wire.WireError as exc:
            return "malformed", f"from {gift.sender[:12]}: {exc}"
        nowhere = self._leads_somewhere(gift.sender, message)
        return None if nowhere is None else (nowhere, f"{message.type} from {gift.sender[:12]}")

    def _no_room_to_wait(self, sealed: nip59.Sealed, event: InboundEvent, now: float) -> bool:
        """A ratchet seal its sender's budget would make wait, with no room left to wait:
        not read now. Read, its key would be spent on a message then dropped, which no
        catch-up or re-send could read again; unread, a catch-up reads it once there is
        room (its ciphertext's size stands in for what the rumor will be charged)."""
        sender = sealed.sender
        if sender in self.sink.blocked or self.deferred.has_room(len(event.content)):
            return False
        return self.deferred.waiting_from(sender) or (
            self.gate.bytes_wait(sender, len(sealed.content), now) > 0
        )

    def _leads_somewhere(self, sender: str, message: wire.WireMessage) -> str | None:
        """None if ``message`` belongs to a call we have with ``sender`` (or rings one);
        else why not. Asked before any work for it: a stranger's wraps for calls that do
        not exist cost an unwrap each, and nothing else."""
        if message.type == "request":
            return None
        peer = self.sink.peer_of(message.call)
        if peer is None:
            return None if f"{sender}:{message.call}" in self._requested else "unknown_call"
        return None if peer == sender else "not_in_call"

    def unwrap_all(
        self,
        events: list[InboundEvent],
        live: bool = False,
        ahead: list[tuple[int, InboundEvent, nip59.Sealed]] | None = None,
        max_skip: int | None = IN_ORDER_SKIP,
        opened: dict[str, nip59.Sealed] | None = None,
    ) -> list[Taken | str]:
        """Unwrap and check each wrap: a `Taken`, or the id of a wrap to mark processed
        without effect (a fragment kept, a forged wrap of a known peer). Junk is
        remembered in memory (`junk`); passing refusals leave nothing. Ratchet seals that
        would skip more than ``max_skip`` keys go to ``ahead`` with their message number
        (a catch-up reads them sorted once the rest is read, passing their outer layers
        back as ``opened``), or wait for a catch-up."""
        out: list[Taken | str] = []
        now = clock.now()
        opener = self.sink.opener(now, max_skip)
        for event in events:
            # Every caller looked the wrap up (`known`) just before, the database too, and
            # `take` looks there again before anything is delivered; memory is checked
            # again, as a catch-up meanwhile may have found it junk or made it wait.
            if event.id in self.waste.ids or event.id in self.deferred:
                continue
            self.stats["unwrapped"] += 1
            try:
                outer = opened.get(event.id) if opened else None
                sealed = outer or nip59.open_wrap(
                    self.keys, event.event, verified=True, read=(event.kind, event.content)
                )
                worth = self._worth_opening(sealed.sender, event, now, live)
                if worth is False:
                    continue
                if sealed.call is not None and self._no_room_to_wait(sealed, event, now):
                    self.schedule_catch_up()
                    continue
                gift = nip59.open_seal(self.keys, sealed, opener, verify=worth is True)
                if worth is None and sealed.call is None:
                    junk = self._strangers_junk(gift)
                    if junk is not None:
                        self.waste.junk(event, junk[0], now, live, junk[1])
                        continue
                    nip59.check_seal(sealed)  # it may lead somewhere: now who sent it
            except nip59.UnwrapError as exc:
                self.waste.junk(event, "unwrap_failed", now, live, str(exc))
                continue
            except ratchet.MessageKeyGone as exc:
                log.debug("ratchet seal from %s read already: %s", sealed.sender[:12], exc)
                if event.id in self.reading:
                    continue  # this very wrap, read by the other path (live or catch-up)
                # A ratchet message already read (its key is gone): a retransmission whose
                # receipt was lost. Processed, and receipted again.
                if sealed.call is not None and self.sink.duplicate(sealed.call, sealed.sender):
                    out.append(event.id)
                else:
                    self.waste.junk(event, "unknown_call", now, live, "ratchet seal, no call")
                continue
            except ratchet.TooFarAhead as exc:
                # Not now: once the gap fills, a catch-up or the sender's re-send brings it.
                log.debug("ratchet seal from %s not read yet: %s", sealed.sender[:12], exc)
                if ahead is not None:
                    ahead.append((header_n(sealed.content), event, sealed))
                else:
                    self.schedule_catch_up()
                continue
            except ratchet.RatchetError as exc:
                self.waste.junk(event, "unwrap_failed", now, live, f"ratchet: {exc}")
                continue
            if gift.ratchet_call is not None:
                self.reading[event.id] = gift.ratchet_call
            sender = gift.sender
            if self.deferred.waiting_from(sender) or (
                sender not in self.sink.blocked
                and not self.gate.admit_bytes(sender, len(gift.content), now)
            ):
                if self.deferred.keep(event, gift, self.schedule_catch_up):
                    out.append(event.id)  # a re-send of one already waiting: processed
                continue
            self._opened(event, gift, now, live, out)
        return out

    def _opened(
        self,
        event: InboundEvent,
        gift: nip59.Unwrapped,
        now: float,
        live: bool,
        out: list[Taken | str],
    ) -> None:
        """The checks after a wrap is open and its sender's budget allows it."""
        self._check(event, gift, now, live, out)
        last = out[-1] if out else None
        if not (isinstance(last, Taken) and last.wrap_id == event.id):
            self.reading.pop(event.id, None)  # read, and gone: nothing to take later

    def _check(
        self,
        event: InboundEvent,
        gift: nip59.Unwrapped,
        now: float,
        live: bool,
        out: list[Taken | str],
    ) -> None:
        sender, kind = gift.sender, gift.kind
        if kind == kinds.PRIVATE_MESSAGE and self.sink.owner and sender == self.sink.owner:
            out.append(Taken(event.id, sender, None, 0, gift.content))
            return
        if kind != kinds.CALL:
            self.waste.junk(event, "not_our_kind", now, live, f"kind {kind} from {sender[:12]}")
            return
        try:
            message = wire.decode(gift.content)
        except wire.WireError as exc:
            self.waste.junk(event, "malformed", now, live, f"from {sender[:12]}: {exc}")
            return
        if gift.ratchet_call is not None and gift.ratchet_call != message.call:
            self.waste.junk(event, "malformed", now, live, "ratchet seal of another call")
            return
        if gift.ratchet_call is not None:
            self.sink.ratchet_read(message.call, sender, message.seq)
        elif message.type in RATCHETED_TYPES and self.sink.ratcheted(
            message.call, sender, message.seq
        ):
            # A downgrade: the peer set up forward secrecy, then sent content without it.
            log.warning(
                "refused %s seq %s of call %s from %s: sent without the ratchet it set up",
                message.type,
                message.seq,
                message.call[:8],
                sender[:12],
            )
            self.waste.drop("downgrade")
            out.append(event.id)  # processed: never shown to the agent, never receipted
            return
        nowhere = self._leads_somewhere(sender, message)
        if nowhere is not None:
            self.waste.junk(event, nowhere, now, live, f"{message.type} from {sender[:12]}")
            return
        if message.type == "request":  # its call's messages lead somewhere from now on
            self._requested.add(f"{sender}:{message.call}")
        if message.type == "frag":
            whole = self._reassemble(event.id, sender, message, now)
            if whole is None:
                out.append(event.id)  # kept in memory: the sender re-sends every piece
                return
            message = whole
        out.append(Taken(event.id, sender, message, gift.created_at))

    def _reassemble(
        self, wrap_id: str, sender: str, piece: wire.WireMessage, now: float
    ) -> wire.WireMessage | None:
        """The whole message once ``piece`` completes it; then it is taken as if it had come
        in one wrap (the same de-duplication by seq, the same receipt)."""
        try:
            return self.fragments.add(sender, piece, now)
        except frag.FragmentError as exc:
            log.info("dropped fragment %s from %s: %s", wrap_id[:12], sender[:12], exc)
            self.waste.drop("bad_fragment")
            return None
