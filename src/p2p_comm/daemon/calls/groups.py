"""Group calls in the daemon: rosters kept in the store, pairwise sessions kept by the
calls service, and the agent events that make a set of sessions look like one call.

The calls service asks this module (its `hooks`) about every event of every call: events
of a group's session are told to the agent under the group's id, with the sender named,
and recorded once in the group's transcript. Messages of 1:1 calls pass through here only
to be counted by the loop watch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from ...protocol import wire
from ...protocol.call import Call, State
from ...protocol.events import AgentEvent
from ...protocol.group import (
    GROUP_LEVEL,
    Group,
    GroupState,
    close_unconfirmed,
    member_session,
    session_id,
)
from ...schema import peer
from ..notify.inbox import agent_event
from ..notify.loopwatch import LoopWatch
from ..relays.directory import npub_of
from .calls import CallService

log = logging.getLogger("p2p.groups")

OLD_PEER_REASON = "group calls need p2p-comm feature level 3 on every participant"
# Events of a session that the agent sees as events of the group, sender named.
_RELAYED = (
    AgentEvent.MESSAGE,
    AgentEvent.FILE,
    AgentEvent.ESCALATION,
    AgentEvent.REFUSED,
    AgentEvent.DELIVERY_FAILED,
)


class GroupService:
    """The groups we are in, and the hooks the calls service calls."""

    def __init__(self, service: CallService, loops: LoopWatch, me: str, my_name: str) -> None:
        self.service = service
        self.store = service.store
        self.loops = loops
        self.me = me
        self.my_name = my_name
        self.groups: dict[str, Group] = {}
        self.by_session: dict[str, str] = {}

    # State ----------------------------------------------------------------------------

    def load(self) -> None:
        self.groups, self.by_session = {}, {}
        for data in self.store.load_groups():
            try:
                group = Group.from_dict(data)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("group %s has unreadable saved state (%s)", data.get("id"), exc)
                continue
            self._index(group)

    def reload(self) -> None:
        self.service.reload()  # which loads the groups again too

    def _index(self, group: Group) -> None:
        self.groups[group.id] = group
        for sid in group.sessions():
            self.by_session[sid] = group.id

    def save(self, group: Group, now: float) -> None:
        """Inside the caller's transaction."""
        self._index(group)
        self.store.save_group(group.id, group.to_dict(), now)

    def group_of(self, call_id: str) -> Group | None:
        gid = self.by_session.get(call_id)
        return self.groups.get(gid) if gid else None

    def sessions(self, group: Group, states: tuple[State, ...] = (State.ACTIVE,)) -> list[Call]:
        """Our sessions with the participants we send to: those that confirmed, and those
        we invited ourselves. Never a member only someone else named (docs/PROTOCOL.md 3.10)."""
        calls = self.service.calls
        ids = [m.session for m in group.confirmed()] + list(group.invited.values())
        return [calls[s] for s in ids if s in calls and calls[s].state in states]

    def names(self, group: Group) -> list[tuple[str, str]]:
        return [(npub_of(m.pubkey), m.name) for m in group.confirmed()]

    def label(self, pubkey: str) -> str:
        """An agent's name as it announces itself, else the start of its npub: never what
        someone else's roster calls it."""
        known = self.service.directory.presence.lookup(pubkey)
        return known.presence.name if known else npub_of(pubkey)[:16]

    def finish(self, group: Group, reason: str, now: float) -> list[Awaitable[None]]:
        """The group ended here: sessions with members that never confirmed are closed
        without a word (inside the caller's transaction)."""
        group.finish(reason, now)
        return self._close_unconfirmed(group, reason, now)

    def _close_unconfirmed(self, group: Group, reason: str, now: float) -> list[Awaitable[None]]:
        work: list[Awaitable[None]] = []
        for member in group.unconfirmed():
            session = self.service.calls.get(member.session)
            if session is not None and session.state != State.ENDED:
                close_unconfirmed(session, reason, now)
                work += self.service.apply(session, [], now)
        return work

    # Hooks (inside the calls service's transaction) -----------------------------------

    def ring_in(self, call: Call, message: wire.WireMessage, now: float) -> None:
        """An incoming request: an invitation into a group if it names one correctly."""
        body = message.body
        gid = body.get("group")
        if not gid:
            return
        if gid in self.groups or call.id != session_id(gid, call.peer, self.me):
            log.info("call %s: group invitation ignored (known or wrong id)", call.id[:8])
            return
        name = self.service.peer_names.get(call.id, "")
        group = Group.invitation(gid, self.me, call.peer, name, call.id, body, call.topic, now)
        self.save(group, now)

    def deliver(
        self, call: Call, kind: AgentEvent, fields: dict[str, Any], now: float
    ) -> list[Awaitable[None]] | None:
        group = self.group_of(call.id)
        if group is None:
            if kind == AgentEvent.MESSAGE:
                name = self.service.peer_names.get(call.id, "")
                peers = [(npub_of(call.peer), name)]
                self.loops.observe(call.id, call.peer, fields["text"], call.topic, peers, now)
            return None
        member = group.members.get(call.peer)
        name = member.name if member else self.service.peer_names.get(call.id, "")
        work: list[Awaitable[None]] = []
        if kind == AgentEvent.CALL_REQUEST:
            participants = [peer(npub_of(pk), self.label(pk)) for pk, _ in group.offered]
            extra = {"group": True, "participants": participants, "starter": self._starter(group)}
            self._emit(group, kind, call.peer, name, {**fields, **extra}, now, record=False)
        elif kind == AgentEvent.CALL_ACCEPTED:
            work += self._accepted(group, call, name, now)
        elif kind in (AgentEvent.CALL_REJECTED, AgentEvent.CALL_MISSED):
            if group.state == GroupState.INVITED:
                group.finish(fields.get("reason", ""), now)
            group.invited.pop(call.peer, None)
            self._emit(group, kind, call.peer, name, fields, now)
        elif kind == AgentEvent.CALL_ENDED:
            work += self._ended(group, call, name, fields, now)
        elif kind in _RELAYED:
            spoke = kind != AgentEvent.DELIVERY_FAILED  # that one is ours, not the peer's
            if spoke and member is not None and member.session == call.id:
                work += self._confirm(group, call, False, now)  # its own word on its session
                name = member.name
            self._emit(group, kind, call.peer, name, fields, now)
            if kind == AgentEvent.MESSAGE:
                peers = self.names(group)
                self.loops.observe(group.id, call.peer, fields["text"], group.topic, peers, now)
        self.save(group, now)
        return work

    def roster(self, call: Call, body: dict[str, Any], now: float) -> list[Awaitable[None]]:
        """A roster from a participant: open sessions with the newcomers it names."""
        gid = body["group"]
        group = self.groups.get(gid)
        if group is None:
            # The first roster of a 1:1 call that its caller turned into a group.
            if gid != call.id or body["starter"] != call.peer or call.direction != "incoming":
                log.info("call %s: roster for an unknown group dropped", call.id[:8])
                return []
            group = Group(gid, self.me, call.peer, call.topic, call.created_at)
            name = self.service.peer_names.get(call.id, "")
            group.join(call.peer, name, call.id, call.answered_at or now)
        member = group.members.get(call.peer)
        if member is None or member.session != call.id or not member.present:
            log.info("call %s: roster from a non-participant dropped", call.id[:8])
            return []
        # Its own roster on its own session: the member confirms it is in (and, if the
        # invitation named it starter, that it started the call).
        work = self._confirm(group, call, body["starter"] == call.peer, now)
        for pubkey, _ in group.newcomers(body["roster"], call.peer):
            work += self._open_session(group, pubkey, now, greet=True)
        self.save(group, now)
        return work

    def ratchet_ready(self, call: Call, now: float) -> list[Awaitable[None]]:
        """We, the responder of a session made from a roster, set up its ratchet from the
        initiator's first message: our roster, under the ratchet at once, gives the
        initiator our key, so its next messages go under it too (it has no sending chain
        until it reads one of ours)."""
        group = self.group_of(call.id)
        if group is None or group.state == GroupState.ENDED:
            return []
        member = group.members.get(call.peer)
        if member is None or member.session != call.id or not member.present:
            return []
        return self.service.apply(call, call.send_roster(self._roster_body(group), now), now)

    def _confirm(
        self, group: Group, call: Call, claims_starter: bool, now: float
    ) -> list[Awaitable[None]]:
        """``call.peer`` spoke on its session: it is in. We tell the agent, and greet it
        (a `roster`) if we have not yet, so that it believes us too."""
        if not group.confirm(call.peer, claims_starter):
            return []
        member = group.members[call.peer]
        member.name = self.label(call.peer)
        self.service.peer_names[call.id] = member.name
        self._emit(group, AgentEvent.PARTICIPANT_JOINED, call.peer, member.name, {}, now)
        if group.starter == self.me:
            # Another participant invited it (anyone may invite): members who take rosters
            # from the starter only (a 1:1 call's callee) hear of it from us.
            return self.announce(group, now)
        if member.greeted:
            return []
        member.greeted = True
        return self.service.apply(call, call.send_roster(self._roster_body(group), now), now)

    def _roster_body(self, group: Group) -> dict[str, Any]:
        return {"group": group.id, "starter": group.starter, "roster": group.roster(self.my_name)}

    # Changes --------------------------------------------------------------------------

    def joined(self, group: Group, now: float) -> list[Awaitable[None]]:
        """We accepted an invitation: sessions, unconfirmed and silent, with everyone else
        the invitation named. Each becomes a participant when it greets us itself."""
        work: list[Awaitable[None]] = []
        for pubkey in group.accepted():
            work += self._open_session(group, pubkey, now, greet=False)
        self.save(group, now)
        return work

    def _open_session(
        self, group: Group, pubkey: str, now: float, greet: bool
    ) -> list[Awaitable[None]]:
        """A session with a member someone else named: unconfirmed until it speaks on it.
        ``greet``: the starter (or an inviter) announced it to us in a roster after it
        accepted, so we greet it with our roster, the one thing sent before it confirms."""
        if pubkey in self.service.blocked or pubkey == self.me:
            return []
        sid = session_id(group.id, self.me, pubkey)
        if sid in self.service.calls:  # a participant that left cannot come back on it
            return []
        call = member_session(group.id, self.me, pubkey, group.topic, now, self.service.limits)
        name = self.label(pubkey)
        self.service.register(call, name)
        group.join(pubkey, name, sid, now, confirmed=False)
        self.by_session[sid] = group.id
        effects = []
        if greet:
            group.members[pubkey].greeted = True
            effects = call.send_roster(self._roster_body(group), now)
        return self.service.apply(call, effects, now)

    def _accepted(self, group: Group, call: Call, name: str, now: float) -> list[Awaitable[None]]:
        """Our invitation was accepted: the newcomer joins and everyone hears the roster."""
        if call.peer not in group.invited:
            return []
        if call.peer_level < GROUP_LEVEL:
            group.invited.pop(call.peer, None)
            fields = {"reason": f"{name} runs an older p2p-comm: {OLD_PEER_REASON}"}
            self._emit(group, AgentEvent.CALL_REJECTED, call.peer, name, fields, now)
            return self.service.apply(call, call.end(OLD_PEER_REASON, now), now)
        group.join(call.peer, name, call.id, now)
        self._emit(group, AgentEvent.PARTICIPANT_JOINED, call.peer, name, {}, now)
        return self.announce(group, now)

    def announce(self, group: Group, now: float) -> list[Awaitable[None]]:
        """Send the roster to every participant (newcomers learn of earlier joiners too)."""
        body = self._roster_body(group)
        work: list[Awaitable[None]] = []
        for session in self.sessions(group):
            if session.peer_level >= GROUP_LEVEL:
                work += self.service.apply(session, session.send_roster(body, now), now)
        return work

    def _ended(
        self, group: Group, call: Call, name: str, fields: dict[str, Any], now: float
    ) -> list[Awaitable[None]]:
        work: list[Awaitable[None]] = []
        reason = fields.get("reason", "")
        if group.state == GroupState.ENDED:
            return work
        if fields.get("all") and call.peer == group.starter:
            for session in self.sessions(group, (State.ACTIVE, State.RINGING)):
                work += self.service.apply(session, session.end(reason, now), now)
            work += self.finish(group, reason, now)
            self._emit(group, AgentEvent.CALL_ENDED, call.peer, name, fields, now)
            return work
        member = group.members.get(call.peer)
        was_in = member is not None and member.confirmed and member.present
        group.leave(call.peer, now)
        if was_in:  # one never shown as in is not shown leaving either
            left = {"reason": reason}
            self._emit(group, AgentEvent.PARTICIPANT_LEFT, call.peer, name, left, now)
        if group.state == GroupState.INVITED:
            group.finish(reason or "the inviter left", now)
            self._emit(group, AgentEvent.CALL_MISSED, call.peer, name, {"reason": reason}, now)
        elif not group.confirmed() and not group.invited:
            work += self.finish(group, "everyone else left", now)
            self._emit(group, AgentEvent.CALL_ENDED, call.peer, name, fields, now)
        return work

    def _emit(
        self,
        group: Group,
        kind: AgentEvent,
        sender: str,
        name: str,
        fields: dict[str, Any],
        now: float,
        record: bool = True,
    ) -> None:
        npub = npub_of(sender)
        event = agent_event(kind, group.id, npub, name, now, {**fields, "group": True})
        self.service.inbox.emit(event, now)
        if record:
            entry = {**fields, "peer": peer(npub, name)}
            self.store.add_entry(group.id, now, "in", str(kind), entry)
        if group.state == GroupState.ENDED:
            self.store.after_commit(lambda: self.write_transcript(group))

    # Descriptions -----------------------------------------------------------------------

    def user_state(self, group: Group) -> str:
        return {"invited": "ringing", "active": "active", "ended": "ended"}[str(group.state)]

    def _starter(self, group: Group) -> dict[str, str]:
        if group.starter == self.me:
            return peer(npub_of(self.me), self.my_name)
        member = group.members.get(group.starter)
        return peer(npub_of(group.starter), member.name if member else "")

    def describe(self, group: Group) -> dict[str, Any]:
        """The call object of schema ``p2p-comm/2`` for a group call: no single ``peer``
        (null); ``participants`` are peer objects with their ``state``, ``me`` first."""
        outbound = self.service.outbound
        participants: list[dict[str, Any]] = [
            {**peer(npub_of(self.me), self.my_name), "state": "me"}
        ]
        totals = {"queued": 0, "sent": 0, "delivered": 0, "refused": 0, "unacked": 0}
        by_whom: dict[str, int] = {}
        for member in group.members.values():
            session = self.service.calls.get(member.session)
            delivery = outbound.delivery(session) if session else {}
            for key in totals:
                totals[key] += delivery.get(key, 0)
            by_whom[member.name or npub_of(member.pubkey)] = delivery.get("delivered", 0)
            state = member.state
            participants.append({**peer(npub_of(member.pubkey), member.name), "state": state})
        for pubkey, sid in group.invited.items():
            invited = self.service.peer_names.get(sid, "")
            participants.append({**peer(npub_of(pubkey), invited), "state": "invited"})
        return {
            "call_id": group.id,
            "group": True,
            "peer": None,
            "direction": "group",
            "topic": group.topic,
            "state": self.user_state(group),
            "outcome": "completed" if group.state == GroupState.ENDED else "",
            "end_reason": group.end_reason,
            "created_at": group.created_at,
            "answered_at": group.created_at,
            "ended_at": group.ended_at,
            "me": peer(npub_of(self.me), self.my_name),
            "starter": self._starter(group),
            "invite": str(group.invite),
            "participants": participants,
            "unacked": totals["unacked"],
            "delivery": {**totals, "delivered_by": by_whom},
            **self.loops.describe(group.id),
        }

    def transcript(self, group: Group) -> tuple[str, dict[str, Any]]:
        from ...transcripts import render_markdown

        info = self.describe(group)
        entries = self.store.entries(group.id)
        path = str(self.service.records.paths.transcripts / f"{group.id}.md")
        document = {"call": info, "entries": entries, "transcript_path": path}
        return render_markdown(info, entries), document

    def write_transcript(self, group: Group) -> None:
        from ...transcripts import render_json

        records = self.service.records
        markdown, document = self.transcript(group)
        records.write_files(group.id, markdown, render_json(document["call"], document["entries"]))

    def open_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.state != GroupState.ENDED]

    def hidden(self, call: Call) -> bool:
        """A session shown to the agent only through its group."""
        return call.id in self.by_session
