"""RPC handlers for group calls: each acts on one group, already resolved (`Targets`).

`TargetCommands` (targeted.py) resolves `--call` once and hands a group here, a 1:1 call to
`CallCommands`. `invite` turns a 1:1 call this agent placed into a group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ... import clock
from ...protocol.call import OUTGOING, Call, CallError, State
from ...protocol.events import Effect
from ...protocol.group import GROUP_LEVEL, Group, GroupError, GroupState, InvitePolicy, Member
from ...protocol.group import session_id as group_session_id
from ...schema import peer
from ..base.errors import CommandError
from ..calls.actions import CallActions
from ..calls.groups import GroupService
from ..calls.targets import Target
from ..notify.owner import OwnerChannels
from ..relays.directory import npub_of
from .commands import OutgoingFile, tell_owner, text_param


class GroupCommands:
    """The call commands on a whole group: every session in one transaction."""

    def __init__(self, groups: GroupService, actions: CallActions, owner: OwnerChannels) -> None:
        self.groups = groups
        self.actions = actions
        self.service = groups.service
        self.owner = owner

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

    async def send(self, group: Group, params: dict[str, Any]) -> Any:
        accepted_at = clock.now()
        text = text_param(params, "text")
        recipients = self._recipients(group)
        # Each session's text parts sized for its own relays, as a 1:1 send's are.
        part = self.service.outbound.text_part_bytes
        work = self._fan(
            group, lambda s, now: s.send_text(text, now, part(s)), ("message", {"text": text})
        )
        self.service.publish(work)
        return {
            "call_id": group.id,
            "bytes": len(text.encode()),
            "accepted_at": accepted_at,
            "recipients": recipients,
            "call_delivery": self.groups.describe(group)["delivery"],
        }

    async def sendfile(self, group: Group, file: OutgoingFile) -> Any:
        self._recipients(group)
        chunk = self.service.outbound.chunk_bytes
        work = self._fan(group, lambda s, now: file.send(s, now, chunk(s)), file.record)
        result = await file.queued(group.id, work)
        delivery = self.groups.describe(group)["delivery"]
        return {**result, "chunks": len(work), "call_delivery": delivery}

    async def escalate(self, group: Group, params: dict[str, Any]) -> Any:
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

    async def end(self, group: Group, params: dict[str, Any]) -> Any:
        reason = text_param(params, "reason", required=False)
        everyone = bool(params.get("all"))
        if everyone and group.starter != self.groups.me:
            raise CommandError(
                "not_allowed", "only the agent that started this call can end it for everyone."
            )
        if group.state == GroupState.INVITED:
            return await self.answer(group, {"decision": "reject", "reason": reason})
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
        return self.transcript(group)

    def transcript(self, group: Group) -> dict[str, Any]:
        markdown, document = self.groups.transcript(group)
        return {"call_id": group.id, "transcript": markdown, **document}

    async def answer(self, group: Group, params: dict[str, Any]) -> Any:
        decision = params.get("decision")
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

    async def invite(self, target: Target, params: dict[str, Any]) -> Any:
        agent = text_param(params, "agent")
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
