"""Relays that refuse what we need: the user hears which relay and why (issue 11).

`status` says per relay what works (receive / send / announce) and why not; `p2p doctor`
probes each relay with a wrap to ourselves; a message no relay takes becomes a
`delivery_failed` event instead of staying queued.
"""

from __future__ import annotations

from p2p_comm.harness import wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of, start_agents
from tests.relaysim import simulated_relay
from tests.schema_check import check


def _relay_line(agent: object, url: str) -> str:
    lines = agent.run("status").stdout.splitlines()  # type: ignore[attr-defined]
    return next(line for line in lines if line.startswith(f"relay {url}"))


def test_doctor_on_a_plain_relay_says_it_works(make_agent: AgentFactory) -> None:
    with simulated_relay() as sim:
        alice = make_agent("alice", [sim.url])
        alice.run("daemon", "start")
        report = alice.json("doctor")
        report.pop("_exit")
        check("doctor", report)
        (probe,) = report["relays"]
        assert probe["ok"] and probe["verdict"].startswith("works"), probe
        text = alice.run("doctor").stdout
        assert f"relay {sim.url}: works" in text and "usable for calls: 1 of 1" in text
        assert "receive yes, send yes, announce yes" in _relay_line(alice, sim.url)


def test_a_relay_refusing_presence_is_named_and_calls_by_npub_still_work(
    make_agent: AgentFactory,
) -> None:
    with simulated_relay(blocked_kinds="30078") as sim:
        alice = make_agent("alice", [sim.url])
        bob = make_agent("bob", [sim.url])
        for agent in (alice, bob):
            agent.run("daemon", "start")
        wait_until(
            lambda: "announce no (refuses kind 30078" in _relay_line(alice, sim.url),
            8,
            "status to name the refused presence kind",
        )
        (probe,) = alice.json("doctor")["relays"]
        assert "cannot discover us" in probe["verdict"], probe
        bob_npub = str(bob.json("whoami")["npub"])
        call_id = str(alice.json("call", bob_npub, "by npub")["call_id"])
        (request,) = events_of(bob, "call_request", timeout=10)
        assert request["call_id"] == call_id


def test_a_relay_refusing_gift_wraps_fails_the_send_visibly(make_agent: AgentFactory) -> None:
    with simulated_relay(blocked_kinds="1059") as sim:
        alice = make_agent("alice", [sim.url])
        bob = make_agent("bob", [sim.url])
        for agent in (alice, bob):
            agent.run("daemon", "start")
        bob_npub = str(bob.json("whoami")["npub"])
        alice.json("call", bob_npub, "will not arrive")
        (failed,) = events_of(alice, "delivery_failed", timeout=10)
        check("event-delivery_failed", failed)
        assert sim.url in failed["reason"] and "not allowed" in failed["reason"], failed
        assert "refuses kind 1059" in _relay_line(alice, sim.url)
        (probe,) = alice.json("doctor", check=False)["relays"]  # exit 1: no relay usable
        assert not probe["ok"] and probe["verdict"].startswith("unusable for calls"), probe


def test_a_relay_that_withholds_our_wraps_is_detected(make_agent: AgentFactory) -> None:
    # Answers OK to everything and stores nothing: only the round trip can tell.
    with simulated_relay(shadow_drop=1.0) as sim:
        alice = make_agent("alice", [sim.url])
        alice.run("daemon", "start")
        (probe,) = alice.json("doctor", check=False)["relays"]  # exit 1: no relay usable
        assert probe["send"] == "yes" and probe["receive"] == "no (withholds DMs)", probe
        assert "never hands them back" in probe["verdict"]
        assert "receive no (withholds DMs)" in _relay_line(alice, sim.url)


def test_a_relay_demanding_pow_20_gets_it_for_presence(make_agent: AgentFactory) -> None:
    # Mining every wrap to 20 bits costs about a second each here (see the matrix's pow_12
    # for the whole story): discovery and the relay's demand in `status` are checked.
    with simulated_relay(min_pow=20) as sim:
        alice = make_agent("alice", [sim.url])
        bob = make_agent("bob", [sim.url])
        for agent in (alice, bob):
            agent.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 15, "alice to discover bob")
        assert "with PoW 20" in _relay_line(alice, sim.url)
        # Its cost is shown too, once alice's own presence is mined (bob's may come first:
        # seen in the full suite on a loaded machine).
        wait_until(lambda: "proof of work:" in alice.run("status").stdout, 15, "the PoW cost")


def _mining(agent: object) -> dict[str, float]:
    stats: dict[str, float] = agent.json("status")["calls"]["stats"]  # type: ignore[attr-defined]
    return stats


def test_wraps_are_mined_only_when_every_relay_of_the_peer_demands_pow(
    make_agent: AgentFactory,
) -> None:
    # PoW costs in proportion to the event's size (each try hashes the whole event): a
    # file chunk at 20 bits takes minutes. With a relay that takes wraps without PoW
    # beside one that demands it, nothing is mined; the demanding relay is left out.
    with simulated_relay(min_pow=20) as demanding, simulated_relay() as plain:
        relays = [demanding.url, plain.url]
        alice, bob = make_agent("alice", relays), make_agent("bob", relays)
        for agent in (alice, bob):
            agent.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "alice to discover bob")
        connect(alice, bob, "pow beside plain")
        for text in ("one", "two", "three"):
            alice.json("send", text)
        assert [e["text"] for e in events_of(bob, "message", count=3)] == ["one", "two", "three"]
        assert _mining(alice)["mined_wraps"] == 0
        assert _mining(bob)["mined_wraps"] == 0


def test_wraps_are_mined_when_the_only_relay_demands_pow(make_agent: AgentFactory) -> None:
    with simulated_relay(min_pow=8) as sim:
        alice, bob = start_agents(sim.url, make_agent, "alice", "bob")
        connect(alice, bob, "pow only")
        alice.json("send", "mined")
        assert [e["text"] for e in events_of(bob, "message")] == ["mined"]
        stats = _mining(alice)
        assert stats["mined_wraps"] >= 2  # the request and the message at least
        assert stats["mining_s_per_wrap"] >= 0
        assert "mined" in alice.run("status").stdout  # its cost, said in text too
