"""Unit tests for the sans-IO group roster and loop guard."""

from __future__ import annotations

import pytest

from p2p_comm.protocol import wire
from p2p_comm.protocol.group import (
    MAX_PARTICIPANTS,
    Group,
    GroupError,
    InvitePolicy,
    Member,
    session_id,
)
from p2p_comm.protocol.loops import LoopBudget, LoopGuard

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
G = "1" * 32


def test_session_id_is_symmetric_and_per_group() -> None:
    assert session_id(G, A, B) == session_id(G, B, A)
    assert session_id(G, A, B) != session_id("2" * 32, A, B)
    assert len(session_id(G, A, B)) == 32


def test_only_the_starter_invites_by_default_and_the_cap_holds() -> None:
    group = Group(G, B, A, "t", 0.0)
    with pytest.raises(GroupError):
        group.check_invite(C)
    group = Group(G, A, A, "t", 0.0)
    group.check_invite(C)
    for index in range(MAX_PARTICIPANTS - 1):
        group.members[f"{index:064x}"] = Member(f"{index:064x}", "x", "s", 0.0)
    with pytest.raises(GroupError):
        group.check_invite(D)


def test_roster_from_a_non_inviter_adds_nobody() -> None:
    group = Group(G, C, A, "t", 0.0)
    group.members[A] = Member(A, "ann", session_id(G, A, C), 0.0)
    group.members[B] = Member(B, "ben", session_id(G, B, C), 0.0)
    assert group.newcomers([[D, "dan"]], B) == []
    assert group.newcomers([[A, "ann"], [D, "dan"], [C, "me"]], A) == [(D, "dan")]
    group.invite = InvitePolicy.ANY
    assert group.newcomers([[D, "dan"]], B) == [(D, "dan")]


def test_group_round_trips() -> None:
    group = Group(G, A, A, "t", 1.0)
    group.join(B, "ben", "s", 2.0)
    group.leave(B, 3.0)
    assert Group.from_dict(group.to_dict()) == group
    assert group.others() == []


def test_wire_roster_and_end_all() -> None:
    message = wire.WireMessage(
        "roster", G, 3, body={"group": G, "starter": A, "roster": [[A, "ann"]]}
    )
    assert wire.decode(message.encode()).body["roster"] == [[A, "ann"]]
    with pytest.raises(wire.WireError):
        wire.decode(message.encode().replace(A, A.upper()))
    end = wire.WireMessage("end", G, 4, body={"reason": "", "all": True})
    assert wire.decode(end.encode()).body["all"] is True


def test_ping_pong_trips_before_the_budget() -> None:
    guard = LoopGuard(LoopBudget(per_minute=100, max_turns=1000, repeats=3))
    tripped = None
    for n in range(10):
        for who in ("a", "b"):
            tripped = tripped or guard.observe(who, f"Thanks, got it {n}!", float(n))
    assert tripped and "ping-pong" in tripped
    assert guard.turns < 10


def test_turn_budget_and_lift() -> None:
    guard = LoopGuard(LoopBudget(per_minute=5, max_turns=0, repeats=0))
    reasons = [
        guard.observe("ab"[i % 2], f"distinct text number {i} " * (i + 1), 0.0) for i in range(7)
    ]
    assert reasons[-2] is not None and "turns in a minute" in reasons[-2]
    guard.lift()
    assert not guard.tripped
    # A burst from one side is one turn.
    burst = LoopGuard(LoopBudget(per_minute=2, max_turns=0, repeats=0))
    assert all(burst.observe("a", f"x{i}", 0.0) is None for i in range(50))


def test_disabled_budget_never_trips() -> None:
    guard = LoopGuard(LoopBudget(0, 0, 0))
    assert all(guard.observe("ab"[i % 2], "same", 0.0) is None for i in range(100))
