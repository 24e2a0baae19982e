"""Group calls: a roster over a set of pairwise sessions (sans-IO, no clock).

A group call is identified by its group id (32 lowercase hex). Every pair of participants
keeps its own ordinary `Call` (the pairwise session: sequence numbers, receipts,
retransmits), so ordering and exactly-once hold per sender and receipts are per recipient.
The pair (starter, first peer) of a 1:1 call that became a group keeps the call's id, which
is also the group id; every other pair uses `session_id`. The starter owns the roster and
announces it; a participant leaves by ending its own sessions. docs/PROTOCOL.md, 3.9.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .call import Call, Direction, Limits

# Group calls need this feature level from every participant (wire.FEATURE_LEVEL).
GROUP_LEVEL = 3
# The most participants a group call holds, ourselves included. Each message becomes one
# wrap per other participant, so the cost of a send grows with this.
MAX_PARTICIPANTS = 16


class InvitePolicy(StrEnum):
    """Who may add participants (a per-call setting; the safe default is the starter)."""

    STARTER = "starter"
    ANY = "any"


class GroupState(StrEnum):
    """Where the group call is, seen from here."""

    INVITED = "invited"  # our invitation rings; we have not answered
    ACTIVE = "active"
    ENDED = "ended"


class GroupError(Exception):
    """A group action that is not allowed; the message is one sentence for the user."""

    def __init__(self, message: str, code: str = "bad_state") -> None:
        super().__init__(message)
        self.code = code


def session_id(group: str, a: str, b: str) -> str:
    """The call id of the pairwise session between ``a`` and ``b`` in ``group``: both
    sides compute it from the roster alone, so no handshake is needed."""
    low, high = sorted((a, b))
    return hashlib.sha256(f"p2p-comm/group/{group}/{low}/{high}".encode()).hexdigest()[:32]


def member_session(group: str, me: str, peer: str, topic: str, now: float, limits: Limits) -> Call:
    """An answered pairwise session with a participant announced by the roster."""
    direction = Direction.OUTGOING if me < peer else Direction.INCOMING
    sid = session_id(group, me, peer)
    return Call.answered_session(sid, peer, direction, topic, now, limits, GROUP_LEVEL)


def close_unconfirmed(call: Call, reason: str, now: float) -> None:
    """End our session with a member that never confirmed, without a word on the wire: it
    may not exist, and we send nothing to what we do not believe."""
    call.close_quietly(reason, now)


@dataclass
class Member:
    """One participant other than us, and our session with it.

    ``confirmed``: the member itself said it is in the call, in a message it signed on its
    own session with us (its `accept` of our invitation, its invitation to us, or any
    message on the session). A member only someone else named (an invitation's or a
    roster's entry) is unconfirmed: shown as such, sent nothing. ``greeted``: we sent it a
    `roster` on the session, which confirms us to it."""

    pubkey: str
    name: str
    session: str
    joined_at: float
    left_at: float | None = None
    confirmed: bool = True
    greeted: bool = True

    @property
    def present(self) -> bool:
        return self.left_at is None

    @property
    def state(self) -> str:
        """As the agent sees it: ``in``, ``unconfirmed`` or ``left``."""
        if not self.present:
            return "left"
        return "in" if self.confirmed else "unconfirmed"


@dataclass
class Group:
    """The roster of one group call and our place in it."""

    id: str
    me: str
    starter: str
    topic: str
    created_at: float
    invite: InvitePolicy = InvitePolicy.STARTER
    state: GroupState = GroupState.ACTIVE
    members: dict[str, Member] = field(default_factory=dict)
    invited: dict[str, str] = field(default_factory=dict)  # pubkey -> ringing session id
    offered: list[list[str]] = field(default_factory=list)  # an invitation's other members
    ended_at: float | None = None
    end_reason: str = ""
    # The starter an invitation named when it was not the inviter: believed only when that
    # agent says so itself (`confirm`), and only in a group where anyone may invite.
    claimed_starter: str = ""

    @classmethod
    def invitation(
        cls,
        group: str,
        me: str,
        inviter: str,
        inviter_name: str,
        session: str,
        body: dict[str, Any],
        topic: str,
        now: float,
    ) -> Group:
        """A group we are invited into, as far as the invitation can be believed: the
        inviter is in (its own signed request says so) and is the starter unless the
        starter itself says otherwise; everyone else it lists is only ``offered``: keys,
        whose names and presence the inviter cannot vouch for."""
        invite = InvitePolicy(body.get("invite", "starter"))
        claimed = body.get("starter", inviter)
        made = cls(group, me, inviter, topic, now, invite, GroupState.INVITED)
        made.claimed_starter = claimed if claimed != inviter else ""
        made.members[inviter] = Member(inviter, inviter_name, session, now)
        listed = [entry[0] for entry in body.get("roster", [])]
        offered = [pk for pk in dict.fromkeys(listed) if pk not in (me, inviter)]
        made.offered = [[pk, ""] for pk in offered[: MAX_PARTICIPANTS - 2]]
        return made

    # Queries -------------------------------------------------------------------------

    def others(self) -> list[Member]:
        """Participants still in the call, besides us, confirmed or not."""
        return [m for m in self.members.values() if m.present]

    def confirmed(self) -> list[Member]:
        """Participants still in the call that confirmed it themselves: the ones we send to."""
        return [m for m in self.others() if m.confirmed]

    def unconfirmed(self) -> list[Member]:
        return [m for m in self.others() if not m.confirmed]

    def by_session(self, call_id: str) -> Member | None:
        return next((m for m in self.members.values() if m.session == call_id), None)

    def sessions(self) -> set[str]:
        return {m.session for m in self.members.values()} | set(self.invited.values())

    def roster(self, my_name: str) -> list[list[str]]:
        """Every participant present that we can vouch for (it confirmed to us), us
        included, as ``[hex, name]`` pairs (the wire form)."""
        return [[self.me, my_name], *([m.pubkey, m.name] for m in self.confirmed())]

    def may_invite(self, who: str) -> bool:
        return self.invite == InvitePolicy.ANY or who == self.starter

    def size(self) -> int:
        return 1 + len(self.others()) + len(self.invited)

    # Changes -------------------------------------------------------------------------

    def check_invite(self, pubkey: str) -> None:
        """Raise unless we may invite ``pubkey`` now."""
        if self.state != GroupState.ACTIVE:
            raise GroupError(f"call {self.id[:8]} is not active.")
        if not self.may_invite(self.me):
            raise GroupError(
                "only the agent that started this call may invite (the call's invite setting).",
                "not_allowed",
            )
        if pubkey == self.me:
            raise GroupError("you are already in this call.", "bad_request")
        if pubkey in self.invited or (pubkey in self.members and self.members[pubkey].present):
            raise GroupError("that agent is already in this call or invited.", "bad_request")
        if self.size() >= MAX_PARTICIPANTS:
            raise GroupError(
                f"a group call holds at most {MAX_PARTICIPANTS} participants.", "too_large"
            )

    def join(
        self, pubkey: str, name: str, session: str, now: float, confirmed: bool = True
    ) -> bool:
        """``pubkey`` is in the call with us over ``session`` (``confirmed``: by its own
        word; otherwise someone else named it and we wait for its own); False if it
        already was."""
        self.invited.pop(pubkey, None)
        known = self.members.get(pubkey)
        if known is not None and known.present:
            return False
        self.members[pubkey] = Member(
            pubkey, name, session, now, confirmed=confirmed, greeted=confirmed
        )
        return True

    def accepted(self) -> list[str]:
        """We accepted the invitation: the keys it offered, to open (unconfirmed) sessions
        with."""
        self.state = GroupState.ACTIVE
        offered = [entry[0] for entry in self.offered]
        self.offered = []
        return offered

    def confirm(self, pubkey: str, claims_starter: bool = False) -> bool:
        """``pubkey`` spoke on its own session with us: it is in. ``claims_starter``: its
        message said it started the call; believed when the invitation named it starter and
        anyone may invite (so someone else could have invited us). True if it was not
        confirmed before."""
        member = self.members.get(pubkey)
        if self.state == GroupState.ENDED or member is None or not member.present:
            return False
        if claims_starter and self.claimed_starter == pubkey and self.invite == InvitePolicy.ANY:
            self.starter = pubkey
            self.claimed_starter = ""
        if member.confirmed:
            return False
        member.confirmed = True
        return True

    def leave(self, pubkey: str, now: float) -> bool:
        """``pubkey`` left; False if it was not in the call."""
        self.invited.pop(pubkey, None)
        member = self.members.get(pubkey)
        if member is None or not member.present:
            return False
        member.left_at = now
        return True

    def newcomers(self, roster: list[list[str]], sender: str) -> list[tuple[str, str]]:
        """The ``(hex, name)`` of roster entries new to us, if ``sender`` may announce them
        (an announcement from anyone else changes nothing). Departures are not taken from
        a roster: each participant's own `end` says it left."""
        if self.state == GroupState.ENDED or not self.may_invite(sender):
            return []
        room = MAX_PARTICIPANTS - self.size()
        fresh = [
            (pk, name)
            for pk, name in roster
            if pk != self.me and pk not in self.members and pk not in self.invited
        ]
        return fresh[: max(0, room)]

    def finish(self, reason: str, now: float) -> None:
        self.state = GroupState.ENDED
        self.ended_at = now
        self.end_reason = reason
        self.invited.clear()

    # Persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["invite"] = str(self.invite)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        data = dict(data)
        data["members"] = {pk: Member(**m) for pk, m in data.get("members", {}).items()}
        data["invite"] = InvitePolicy(data.get("invite", "starter"))
        data["state"] = GroupState(data.get("state", "active"))
        return cls(**data)
