"""Unit tests for the sans-IO group roster and loop guard."""

from __future__ import annotations

import pytest

from p2p_comm.protocol import wire
from p2p_comm.protocol.group import (
    MAX_PARTICIPANTS,
    Group,
    GroupError,
    GroupState,
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


def _invitation(inviter: str, starter: str, invite: str = "starter") -> Group:
    body = {"group": G, "starter": starter, "invite": invite}
    body["roster"] = [[B, "carol"], [inviter, "inv"], [D, "dave"], [C, "me"], [B, "twice"]]
    return Group.invitation(G, C, inviter, "inv", session_id(G, inviter, C), body, "t", 0.0)


def test_an_invitation_is_believed_only_about_the_inviter() -> None:
    group = _invitation(A, B)  # A invites C, claiming B started it
    assert group.state == GroupState.INVITED and group.starter == A
    assert [m.state for m in group.members.values()] == ["in"]
    assert group.offered == [[B, ""], [D, ""]]  # keys only: the inviter's names are dropped
    assert group.accepted() == [B, D] and group.state == GroupState.ACTIVE
    group.join(B, "bob", session_id(G, B, C), 1.0, confirmed=False)
    group.join(D, "npub1...", session_id(G, D, C), 1.0, confirmed=False)
    assert [(m.pubkey, m.state) for m in group.others()] == [
        (A, "in"),
        (B, "unconfirmed"),
        (D, "unconfirmed"),
    ]
    assert [m.pubkey for m in group.confirmed()] == [A]
    assert group.roster("me") == [[C, "me"], [A, "inv"]]  # we vouch only for the confirmed
    # B speaks on its own session, saying it started the call: in, but not the starter,
    # since only the starter may invite here (so A's claim was false anyway).
    assert group.confirm(B, claims_starter=True) and group.starter == A
    assert not group.confirm(B)
    assert group.members[B].state == "in" and group.members[B].greeted is False


def test_the_starter_is_believed_from_its_own_word_where_anyone_may_invite() -> None:
    group = _invitation(A, B, "any")
    group.accepted()
    group.join(B, "bob", session_id(G, B, C), 1.0, confirmed=False)
    group.join(D, "dan", session_id(G, D, C), 1.0, confirmed=False)
    assert group.confirm(D, claims_starter=True) and group.starter == A  # not the one named
    assert group.confirm(B, claims_starter=True) and group.starter == B
    ended = _invitation(A, B, "any")
    ended.finish("over", 2.0)
    assert not ended.confirm(A)


def test_group_state_of_an_older_version_reads_as_confirmed() -> None:
    group = Group(G, A, A, "t", 1.0)
    group.join(B, "ben", "s", 2.0)
    data = group.to_dict()
    for member in data["members"].values():
        del member["confirmed"], member["greeted"]
    del data["claimed_starter"]
    assert Group.from_dict(data) == group
    assert Group.from_dict(data).members[B].state == "in"


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


def test_two_bursts_of_similar_lines_are_not_a_ping_pong() -> None:
    """Issue 21, finding 8: one side sends numbered lines, then the other does: two turns."""
    guard = LoopGuard(LoopBudget(per_minute=100, max_turns=1000, repeats=3))
    for who in ("a", "b"):
        for n in range(10):
            assert guard.observe(who, f"step {n} of the plan", float(n)) is None
    assert guard.turns == 2 and not guard.tripped


def test_a_ping_pong_needs_repeats_across_alternating_turns() -> None:
    guard = LoopGuard(LoopBudget(per_minute=100, max_turns=1000, repeats=3))
    reasons = []
    for n in range(6):
        for who in ("a", "b"):
            # Each turn a short burst of the same thing again: still a ping-pong.
            reasons += [guard.observe(who, f"ok {n}.{k}", float(n)) for k in range(2)]
    tripped = [r for r in reasons if r]
    assert tripped and "ping-pong" in tripped[0]
    # A turn that says something new breaks the streak.
    fresh = LoopGuard(LoopBudget(per_minute=100, max_turns=1000, repeats=3))
    topics = ["prices", "weather", "a recipe", "the schedule", "budgets", "travel", "music"]
    for n, topic in enumerate(topics):
        fresh.observe("a", f"ok {n}", float(n))
        assert fresh.observe("b", f"now tell me about {topic}", float(n)) is None
