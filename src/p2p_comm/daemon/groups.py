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

from ..protocol import wire
from ..protocol.call import Call, State
from ..protocol.events import AgentEvent
from ..protocol.group import (
    GROUP_LEVEL,
    Group,
    GroupState,
    InvitePolicy,
    Member,
    member_session,
    session_id,
)
from ..schema import peer
from .calls import CallService
from .directory import npub_of
from .inbox import agent_event
from .loopwatch import LoopWatch

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
        calls = self.service.calls
        ids = [m.session for m in group.others()] + list(group.invited.values())
        return [calls[s] for s in ids if s in calls and calls[s].state in states]

    def names(self, group: Group) -> list[tuple[str, str]]:
        return [(npub_of(m.pubkey), m.name) for m in group.others()]

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
        invite = InvitePolicy(body.get("invite", "starter"))
        group = Group(gid, self.me, body.get("starter", call.peer), call.topic, now, invite)
        group.state = GroupState.INVITED
        name = self.service.peer_names.get(call.id, "")
        group.members[call.peer] = Member(call.peer, name, call.id, now)
        group.offered = [e for e in body.get("roster", []) if e[0] not in (self.me, call.peer)]
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
            participants = [peer(npub_of(pk), n) for pk, n in group.offered]
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
            group.members[call.peer] = Member(call.peer, name, call.id, call.answered_at or now)
        member = group.members.get(call.peer)
        if member is None or member.session != call.id or not member.present:
            log.info("call %s: roster from a non-participant dropped", call.id[:8])
            return []
        work: list[Awaitable[None]] = []
        for pubkey, name in group.newcomers(body["roster"], call.peer):
            work += self._open_session(group, pubkey, name, now, announce=True)
        self.save(group, now)
        return work

    # Changes --------------------------------------------------------------------------

    def joined(self, group: Group, now: float) -> list[Awaitable[None]]:
        """We accepted an invitation: sessions with everyone the invitation named."""
        work: list[Awaitable[None]] = []
        group.state = GroupState.ACTIVE
        for pubkey, name in group.offered:
            work += self._open_session(group, pubkey, name, now, announce=False)
        group.offered = []
        self.save(group, now)
        return work

    def _open_session(
        self, group: Group, pubkey: str, name: str, now: float, announce: bool
    ) -> list[Awaitable[None]]:
        if pubkey in self.service.blocked or pubkey == self.me:
            return []
        sid = session_id(group.id, self.me, pubkey)
        if sid in self.service.calls:  # a participant that left cannot come back on it
            return []
        call = member_session(group.id, self.me, pubkey, group.topic, now, self.service.limits)
        self.service.calls[call.id] = call
        self.service.peer_names[call.id] = name
        group.join(pubkey, name, sid, now)
        self.by_session[sid] = group.id
        if announce:
            self._emit(group, AgentEvent.PARTICIPANT_JOINED, pubkey, name, {}, now)
        return self.service._apply(call, [], now)

    def _accepted(self, group: Group, call: Call, name: str, now: float) -> list[Awaitable[None]]:
        """Our invitation was accepted: the newcomer joins and everyone hears the roster."""
        if call.peer not in group.invited:
            return []
        if call.peer_level < GROUP_LEVEL:
            group.invited.pop(call.peer, None)
            fields = {"reason": f"{name} runs an older p2p-comm: {OLD_PEER_REASON}"}
            self._emit(group, AgentEvent.CALL_REJECTED, call.peer, name, fields, now)
            return self.service._apply(call, call.end(OLD_PEER_REASON, now), now)
        group.join(call.peer, name, call.id, now)
        self._emit(group, AgentEvent.PARTICIPANT_JOINED, call.peer, name, {}, now)
        return self.announce(group, now)

    def announce(self, group: Group, now: float) -> list[Awaitable[None]]:
        """Send the roster to every participant (newcomers learn of earlier joiners too)."""
        body = {"group": group.id, "starter": group.starter, "roster": group.roster(self.my_name)}
        work: list[Awaitable[None]] = []
        for session in self.sessions(group):
            if session.peer_level >= GROUP_LEVEL:
                work += self.service._apply(session, session.send_roster(body, now), now)
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
                work += self.service._apply(session, session.end(reason, now), now)
            group.finish(reason, now)
            self._emit(group, AgentEvent.CALL_ENDED, call.peer, name, fields, now)
            return work
        group.leave(call.peer, now)
        self._emit(group, AgentEvent.PARTICIPANT_LEFT, call.peer, name, {"reason": reason}, now)
        if group.state == GroupState.INVITED:
            group.finish(reason or "the inviter left", now)
            self._emit(group, AgentEvent.CALL_MISSED, call.peer, name, {"reason": reason}, now)
        elif not group.others() and not group.invited:
            group.finish("everyone else left", now)
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
            state = "in" if member.present else "left"
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
        from ..transcripts import render_markdown

        info = self.describe(group)
        entries = self.store.entries(group.id)
        path = str(self.service.records.paths.transcripts / f"{group.id}.md")
        document = {"call": info, "entries": entries, "transcript_path": path}
        return render_markdown(info, entries), document

    def write_transcript(self, group: Group) -> None:
        from ..transcripts import render_json

        records = self.service.records
        markdown, document = self.transcript(group)
        records.write_files(group.id, markdown, render_json(document["call"], document["entries"]))

    def open_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.state != GroupState.ENDED]

    def hidden(self, call: Call) -> bool:
        """A session shown to the agent only through its group."""
        return call.id in self.by_session
