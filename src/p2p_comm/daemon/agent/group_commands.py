"""RPC handlers for group calls and loop protection, layered over the call commands.

`wrap` takes the daemon's handlers and returns them with: `invite`; `answer`, `send`,
`sendfile`, `escalate`, `end`, `transcript` that act on a whole group when the call named
(or implied) is one, and otherwise pass the resolved 1:1 call on; `send` refused while a
loop is suspected (`force` lifts it); `status`, `history`, `list` showing groups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ... import clock
from ...protocol.call import ACTIVE, ENDED, OUTGOING, RINGING, Call, CallError, State
from ...protocol.events import Effect
from ...protocol.group import GROUP_LEVEL, Group, GroupError, GroupState, InvitePolicy, Member
from ...protocol.group import session_id as group_session_id
from ...schema import peer
from ..base.errors import CommandError
from ..calls.actions import CallActions
from ..calls.groups import GroupService
from ..notify.owner import OwnerChannels
from ..relays.directory import npub_of
from .commands import OutgoingFile, tell_owner, text_param

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
Target = Group | Call
_STATES: dict[str, tuple[str, ...]] = {
    "answer": (RINGING,),
    "send": (ACTIVE,),
    "sendfile": (ACTIVE,),
    "escalate": (ACTIVE,),
    "end": (ACTIVE, RINGING),
    "invite": (ACTIVE,),
}
_WHAT = {
    "answer": "ringing incoming call",
    "end": "active or ringing call",
    "invite": "active call",
}


class GroupCommands:
    """Routes each call command to the group layer or to the 1:1 handler."""

    def __init__(self, groups: GroupService, actions: CallActions, owner: OwnerChannels) -> None:
        self.groups = groups
        self.actions = actions
        self.service = groups.service
        self.loops = groups.loops
        self.owner = owner

    def wrap(self, handlers: dict[str, Handler]) -> dict[str, Handler]:
        out = dict(handlers)
        for name in ("answer", "send", "sendfile", "escalate", "end"):
            out[name] = partial(self._route, name, handlers[name])
        out["invite"] = self.invite
        out["transcript"] = partial(self._transcript, handlers["transcript"])
        out["history"] = partial(self._history, handlers["history"])
        out["status"] = partial(self._status, handlers["status"])
        out["list"] = partial(self._list, handlers["list"])
        return out

    # Resolving ------------------------------------------------------------------------

    def _visible(self) -> list[tuple[str, str, Target]]:
        """(id, state, target) of what the agent sees as calls."""
        seen: list[tuple[str, str, Target]] = [
            (g.id, self.groups.user_state(g), g) for g in self.groups.groups.values()
        ]
        seen += [
            (c.id, str(c.state), c)
            for c in self.service.calls.values()
            if not self.groups.hidden(c)
        ]
        return seen

    def resolve(self, prefix: Any, states: tuple[str, ...], what: str, incoming: bool) -> Target:
        visible = self._visible()
        if isinstance(prefix, str) and prefix:
            matches = [t for cid, _, t in visible if cid.startswith(prefix.lower())]
            if not matches:
                raise CommandError("no_call", f"no call matches '{prefix}'.")
            if len(matches) > 1:
                raise CommandError("ambiguous_call", f"'{prefix}' matches several calls.")
            return matches[0]
        candidates = [
            t
            for _, state, t in visible
            if state in states
            and not (incoming and isinstance(t, Call) and t.direction == OUTGOING)
        ]
        if not candidates:
            raise CommandError("no_call", f"there is no {what}.")
        if len(candidates) > 1:
            listed = ", ".join(t.id[:8] for t in candidates)
            raise CommandError(
                "ambiguous_call", f"several calls qualify; pick one with --call: {listed}."
            )
        return candidates[0]

    async def _route(self, name: str, original: Handler, params: dict[str, Any]) -> Any:
        what = _WHAT.get(name, "active call")
        target = self.resolve(params.get("call"), _STATES[name], what, name == "answer")
        if isinstance(target, Call):
            if name == "send":
                self.loops.check_send(target.id, bool(params.get("force")))
            result = await original({**params, "call": target.id})
            if name == "send":
                peers = [(npub_of(target.peer), self.service.peer_names.get(target.id, ""))]
                self._observe_own(target.id, params.get("text", ""), target.topic, peers)
            return result
        handler = getattr(self, f"_group_{name}")
        return await handler(target, params)

    def _observe_own(self, call_id: str, text: str, topic: str, peers: list[Any]) -> None:
        with self.service.store.transaction():
            self.loops.observe(call_id, self.groups.me, text, topic, peers, clock.now())

    # Fan-out --------------------------------------------------------------------------

    def _fan(
        self,
        group: Group,
        make: Callable[[Call, float], list[Effect]],
        record: tuple[str, dict[str, Any]] | None,
        states: tuple[State, ...] = (State.ACTIVE,),
    ) -> list[Awaitable[None]]:
        """One action on every session of ``group``, in one transaction."""
        if group.state == GroupState.ENDED:
            raise CommandError("bad_state", f"call {group.id[:8]} has ended.")
        sessions = self.groups.sessions(group, states)
        now = clock.now()
        try:
            with self.service.store.transaction():
                work: list[Awaitable[None]] = []
                for session in sessions:
                    work += self.service.apply(session, make(session, now), now)
                if record is not None:
                    self.service.store.add_entry(group.id, now, "out", record[0], record[1])
                return work
        except CallError as exc:
            self.groups.reload()
            raise CommandError(exc.code, str(exc)) from None
        except Exception:
            self.groups.reload()
            raise

    def _recipients(self, group: Group) -> int:
        count = len(self.groups.sessions(group))
        if not count:
            raise CommandError("no_call", "nobody else is in this call right now.")
        return count

    async def _group_send(self, group: Group, params: dict[str, Any]) -> Any:
        accepted_at = clock.now()
        text = text_param(params, "text")
        self.loops.check_send(group.id, bool(params.get("force")))
        recipients = self._recipients(group)
        work = self._fan(group, lambda s, now: s.send_text(text, now), ("message", {"text": text}))
        self.service.publish(work)
        self._observe_own(group.id, text, group.topic, self.groups.names(group))
        return {
            "call_id": group.id,
            "bytes": len(text.encode()),
            "accepted_at": accepted_at,
            "recipients": recipients,
            "call_delivery": self.groups.describe(group)["delivery"],
        }

    async def _group_sendfile(self, group: Group, params: dict[str, Any]) -> Any:
        file = await OutgoingFile.read(params, self.service)
        self._recipients(group)
        chunk = self.service.outbound.chunk_bytes
        work = self._fan(group, lambda s, now: file.send(s, now, chunk(s)), file.record)
        result = await file.queued(group.id, work)
        delivery = self.groups.describe(group)["delivery"]
        return {**result, "chunks": len(work), "call_delivery": delivery}

    async def _group_escalate(self, group: Group, params: dict[str, Any]) -> Any:
        text = text_param(params, "text")
        self._recipients(group)
        work = self._fan(
            group, lambda s, now: s.escalate(text, now), ("escalation", {"text": text})
        )
        self.service.publish(work)
        names = self.groups.names(group)
        peers = "group: " + ", ".join(n for _, n in names)
        npubs = ", ".join(p for p, _ in names)
        store, me = self.service.store, self.groups.my_name
        return await tell_owner(self.owner, store, me, group.id, (peers, npubs), group.topic, text)

    async def _group_end(self, group: Group, params: dict[str, Any]) -> Any:
        reason = text_param(params, "reason", required=False)
        everyone = bool(params.get("all"))
        if everyone and group.starter != self.groups.me:
            raise CommandError(
                "not_allowed", "only the agent that started this call can end it for everyone."
            )
        if group.state == GroupState.INVITED:
            return await self._group_answer(group, {"decision": "reject", "reason": reason})
        record = ("call_ended", {"reason": reason, "all": everyone})

        def hang_up(session: Call, now: float) -> list[Effect]:
            return session.end(reason, now, everyone=everyone)

        work = self._fan(group, hang_up, record, (State.ACTIVE, State.RINGING))
        with self.service.store.transaction():
            why = reason or ("ended for everyone" if everyone else "left")
            work += self.groups.finish(group, why, clock.now())
            self.groups.save(group, clock.now())
        self.service.publish(work)
        self.groups.write_transcript(group)
        markdown, document = self.groups.transcript(group)
        return {"call_id": group.id, "transcript": markdown, **document}

    async def _group_answer(self, group: Group, params: dict[str, Any]) -> Any:
        decision = params.get("decision")
        if decision not in ("accept", "reject"):
            raise CommandError("bad_request", "answer with 'accept' or 'reject'.")
        session = next(
            (s for s in self.groups.sessions(group, (State.RINGING,)) if s.direction != OUTGOING),
            None,
        )
        if group.state != GroupState.INVITED or session is None:
            raise CommandError("bad_state", f"call {group.id[:8]} is not ringing here.")
        now = clock.now()
        if decision == "accept":
            work = self.actions.act(session, session.accept)
            with self.service.store.transaction():
                self.service.store.add_entry(group.id, now, "out", "call_accepted", {})
                work += self.groups.joined(group, now)
        else:
            reason = text_param(params, "reason", required=False) or "declined"
            work = self.actions.act(session, lambda t: session.reject(reason, t))
            with self.service.store.transaction():
                group.finish(reason, now)
                self.groups.save(group, now)
        self.service.publish(work)
        return self.groups.describe(group)

    # Invite ---------------------------------------------------------------------------

    async def invite(self, params: dict[str, Any]) -> Any:
        agent = text_param(params, "agent")
        target = self.resolve(params.get("call"), _STATES["invite"], _WHAT["invite"], False)
        now = clock.now()
        pubkey, name = self.service.directory.resolve(agent, now)
        if pubkey in self.service.blocked:
            raise CommandError("blocked", "that agent is blocked; 'p2p unblock' it first.")
        group = target if isinstance(target, Group) else self._from_call(target, params, now)
        try:
            group.check_invite(pubkey)
        except GroupError as exc:
            raise CommandError(exc.code, str(exc)) from None
        sid = group_session_id(group.id, self.groups.me, pubkey)
        if sid in self.service.calls:
            raise CommandError("bad_state", "that agent left this call; start a new call with it.")
        call, effects = Call.start(
            sid, pubkey, group.topic, self.groups.my_name, now, self.service.limits
        )
        extra = {
            "group": group.id,
            "starter": group.starter,
            "roster": group.roster(self.groups.my_name),
            "invite": str(group.invite),
        }
        effects = call.request_extra(effects, extra)
        self.service.register(call, name)
        group.invited[pubkey] = sid
        try:
            with self.service.store.transaction():
                self.groups.save(group, now)
                entry = {"peer": peer(npub_of(pubkey), name)}
                self.service.store.add_entry(group.id, now, "out", "invited", entry)
                work = self.service.apply(call, effects, now)
        except Exception:
            self.groups.reload()
            raise
        self.service.publish(work)
        return {**self.groups.describe(group), "invited": peer(npub_of(pubkey), name)}

    def _from_call(self, call: Call, params: dict[str, Any], now: float) -> Group:
        """A 1:1 call becomes a group: its caller is the starter; the call id stays."""
        if call.direction != OUTGOING:
            raise CommandError(
                "not_allowed",
                "only the agent that started this call may invite; ask it to, or start a call.",
            )
        peer_name = self.service.peer_names.get(call.id, "")
        if call.peer_level < GROUP_LEVEL:
            raise CommandError(
                "old_peer",
                f"{peer_name or 'the peer'} runs an older p2p-comm (feature level "
                f"{call.peer_level}) that cannot take part in group calls.",
            )
        policy = InvitePolicy.ANY if params.get("anyone_may_invite") else InvitePolicy.STARTER
        me = self.groups.me
        group = Group(call.id, me, me, call.topic, call.created_at, policy)
        group.members[call.peer] = Member(call.peer, peer_name, call.id, call.answered_at or now)
        return group

    # Reading --------------------------------------------------------------------------

    async def _transcript(self, original: Handler, params: dict[str, Any]) -> Any:
        prefix = params.get("call")
        group = self.groups.groups.get(prefix) if isinstance(prefix, str) else None
        if group is None and isinstance(prefix, str) and prefix:
            found = [g for g in self.groups.groups.values() if g.id.startswith(prefix.lower())]
            group = found[0] if len(found) == 1 else None
        if group is None:
            return await original(params)
        markdown, document = self.groups.transcript(group)
        return {"call_id": group.id, "transcript": markdown, **document}

    async def _history(self, original: Handler, params: dict[str, Any]) -> Any:
        result = await original(params)
        calls = [c for c in result["calls"] if c["call_id"] not in self.groups.by_session]
        calls += [self.groups.describe(g) for g in self.groups.groups.values()]
        calls.sort(key=lambda c: c["created_at"], reverse=True)
        return {**result, "calls": calls}

    async def _status(self, original: Handler, params: dict[str, Any]) -> Any:
        result = await original(params)
        calls = result["calls"]
        for key in ("active", "ringing_in", "ringing_out"):
            calls[key] = [c for c in calls[key] if c["call_id"] not in self.groups.by_session]
        for group in self.groups.open_groups():
            key = "active" if group.state == GroupState.ACTIVE else "ringing_in"
            calls[key].append(self.groups.describe(group))
        return result

    async def _list(self, original: Handler, params: dict[str, Any]) -> Any:
        result = await original(params)
        in_call: dict[str, list[str]] = {}
        for _, state, target in self._visible():
            if state == ENDED:
                continue
            if isinstance(target, Group):
                for member in target.confirmed():
                    in_call.setdefault(member.pubkey, []).append(target.id)
            else:
                in_call.setdefault(target.peer, []).append(target.id)
        for agent in result["agents"]:
            agent["in_call_with_me"] = in_call.get(agent["pubkey"], [])
        return result
