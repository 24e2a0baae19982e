"""Group calls and loop protection through the real `p2p` command on a loopback relay."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from p2p_comm import rpc
from p2p_comm.harness import Agent, wait_until

from .calls_helpers import connect, events_of, start_agents


def _invite(starter: Agent, invitee: Agent, call_id: str) -> None:
    starter.json("invite", invitee.name, "--call", call_id[:8])
    (request,) = events_of(invitee, "call_request")
    assert request["call_id"] == call_id and request["group"] is True
    invitee.json("answer", "accept", "--call", call_id[:8])


def _messages(agent: Agent, count: int) -> list[dict[str, Any]]:
    return events_of(agent, "message", count, timeout=40)


def test_group_of_four(relay: Any, make_agent: Any) -> None:
    a, b, c, d = start_agents(relay.url, make_agent, "ann", "ben", "cat", "dan")
    call_id = connect(a, b, "plan the release")
    _invite(a, c, call_id)
    _invite(a, d, call_id)
    # The starter sees both newcomers join; the first peer hears of both from the roster.
    assert {e["peer"]["name"] for e in events_of(a, "participant_joined", 2)} == {"cat", "dan"}
    assert {e["peer"]["name"] for e in events_of(b, "participant_joined", 2)} == {"cat", "dan"}
    # A member the starter announced is in for the others once it greeted them itself: each
    # newcomer sees the earlier members join as they confirm, and they see it.
    assert {e["peer"]["name"] for e in events_of(c, "participant_joined", 2)} == {"ben", "dan"}
    assert {e["peer"]["name"] for e in events_of(d, "participant_joined", 2)} == {"ben", "cat"}
    for agent in (a, b, c, d):
        (group,) = agent.json("status")["calls"]["active"]
        states = {p["name"]: p["state"] for p in group["participants"]}
        assert states == {"ann": "in", "ben": "in", "cat": "in", "dan": "in", agent.name: "me"}
        assert group["starter"]["name"] == "ann"

    everyone = (a, b, c, d)
    for n in range(1, 4):
        for agent in everyone:
            agent.json("send", f"{agent.name} says {n}", "--call", call_id[:8])
    for agent in everyone:
        got = _messages(agent, 9)
        assert all(e["call_id"] == call_id for e in got)
        for other in everyone:
            if other is agent:
                continue
            texts = [e["text"] for e in got if e["peer"]["name"] == other.name]
            assert texts == [f"{other.name} says {n}" for n in range(1, 4)], (agent.name, texts)

    # A file reaches every other participant intact.
    data = os.urandom(30_000)
    a.json("sendfile", "notes.bin", base64.b64encode(data).decode(), "--call", call_id[:8])
    for agent in (b, c, d):
        (event,) = events_of(agent, "file", timeout=40)
        assert Path(event["path"]).read_bytes() == data
        assert event["sha256"] == hashlib.sha256(data).hexdigest()

    # Dan leaves: the others see it; he gets nothing more; the rest go on.
    d.json("end", "--call", call_id[:8])
    for agent in (a, b, c):
        (left,) = events_of(agent, "participant_left")
        assert left["peer"]["name"] == "dan"
    b.json("send", "after dan left", "--call", call_id[:8])
    for agent in (a, c):
        assert _messages(agent, 1)[0]["text"] == "after dan left"
    late = d.json("inbox")["events"]
    assert not [e for e in late if e["type"] == "message"]

    # Cat's daemon is killed mid-call and restarted: it catches up.
    pid = c.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: c.daemon_pid() is None, 10, "cat's daemon to die")
    a.json("send", "while cat was away", "--call", call_id[:8])
    c.run("daemon", "start")
    assert _messages(c, 1)[0]["text"] == "while cat was away"
    assert _messages(b, 1)[0]["text"] == "while cat was away"

    # Transcripts attribute every message; the starter ends it for all.
    transcript = b.json("transcript", "--call", call_id[:8])["transcript"]
    assert "cat says 3" in transcript and "`cat` (npub" in transcript
    a.json("end", "--all", "--call", call_id[:8])
    for agent in (b, c):
        assert events_of(agent, "call_ended")[0]["call_id"] == call_id
    history = b.json("history")["calls"]
    assert history[0]["call_id"] == call_id and history[0]["state"] == "ended"


def test_a_burst_of_group_sends_arrives_once_each_and_in_order(relay: Any, make_agent: Any) -> None:
    """Sends answer before their wraps are built and published (issue 20): a burst of them,
    back to back, still reaches every participant exactly once and in the sender's order,
    and the sender's daemon, killed right after the burst, publishes what it had not yet."""
    a, b, c = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    call_id = connect(a, b, "a burst")
    _invite(a, c, call_id)
    events_of(a, "participant_joined")
    events_of(b, "participant_joined")
    events_of(c, "participant_joined")
    count = 40
    for index in range(count):
        sent = rpc.request(a.paths.socket, "send", {"text": f"burst {index}", "call": call_id})
        assert sent["recipients"] == 2
    pid = a.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)  # whatever was only queued is in the outbox
    wait_until(lambda: a.daemon_pid() is None, 10, "ann's daemon to die")
    a.run("daemon", "start")
    for agent in (b, c):
        got = _messages(agent, count)
        assert [e["text"] for e in got] == [f"burst {i}" for i in range(count)], agent.name
    # Nothing more arrives: no message was delivered twice.
    for agent in (b, c):
        extra = agent.json("wait", "--timeout", "2", check=False)["events"]
        assert not [e for e in extra if e["type"] == "message"], agent.name


def test_outsider_cannot_invite_or_join(relay: Any, make_agent: Any) -> None:
    """Only the starter may invite by default; an outsider's forged roster changes nothing."""
    a, b, c = start_agents(relay.url, make_agent, "ann", "ben", "eve")
    call_id = connect(a, b)
    refused = b.json("invite", "eve", "--call", call_id[:8], check=False)
    assert refused["_exit"] != 0 and refused["error"]["code"] == "not_allowed"
    # eve sends a forged call message into the call id: it comes from a key not in it.
    forged = c.json("call", "ann", "hello")  # a call of her own is fine and separate
    assert forged["call_id"] != call_id
    b.json("send", "only for ann", "--call", call_id[:8])
    got = _messages(a, 1)
    assert got[0]["text"] == "only for ann" and got[0]["call_id"] == call_id


def test_loop_protection_stops_ping_pong(relay: Any, make_agent: Any) -> None:
    loops = {"loop_turns_per_minute": "20", "loop_max_turns": "200", "loop_repeats": "3"}
    a, b = start_agents(relay.url, make_agent, "ping", "pong", **loops)
    call_id = connect(a, b)
    a.json("send", "hello 0", "--call", call_id[:8])
    events_of(b, "message")
    stopped: dict[str, dict[str, Any]] = {}
    # Each answers what it received, as agents in a ping-pong do: both daemons then see the
    # same alternating turns (a ping-pong needs alternation, not two bursts).
    for n in range(1, 20):
        for me, other in ((b, a), (a, b)):
            if me.name in stopped:
                continue
            result = me.json("send", f"thanks, got it {n}", "--call", call_id[:8], check=False)
            if result["_exit"] != 0:
                stopped[me.name] = result
            elif other.name not in stopped:
                events_of(other, "message")
        if len(stopped) == 2:
            break
    assert set(stopped) == {"ping", "pong"}, stopped
    for result in stopped.values():
        assert result["error"]["code"] == "loop_suspected"
    for agent in (a, b):
        (event,) = events_of(agent, "loop_suspected")
        assert event["call_id"] == call_id
        log = agent.paths.escalations

        def told(path: Path = log) -> bool:
            lines = path.read_text().splitlines() if path.exists() else []
            return any("Runaway loop" in json.loads(x)["text"] for x in lines)

        wait_until(told, 10, f"{agent.name}'s owner to be told")
    # A human lifts it: --force sends again.
    assert a.json("send", "a human says go on", "--force", "--call", call_id[:8])["_exit"] == 0


def _impersonating_wrap(forger: Any, victim_hex: str, receiver_hex: str, content: str) -> Any:
    """A rumor that names ``victim_hex`` as its author, sealed and wrapped by ``forger``:
    what an outsider would need to speak as a participant."""
    import nostr_sdk as ns

    from p2p_comm.protocol.wire import CALL_KIND

    receiver = ns.PublicKey.parse(receiver_hex)
    rumor = ns.EventBuilder(ns.Kind(CALL_KIND), content).finalize_unsigned(
        ns.PublicKey.parse(victim_hex)
    )
    seal = ns.nip59_make_seal(forger, receiver, rumor)  # the SDK seals whatever it is given
    one_time = ns.Keys.generate()
    sealed = ns.nip44_encrypt(one_time.secret_key(), receiver, seal.as_json(), ns.Nip44Version.V2)
    return (
        ns.EventBuilder(ns.Kind(1059), sealed)
        .tags([ns.Tag.public_key(receiver)])
        .finalize(one_time)
    )


def test_an_outsider_cannot_inject_into_a_group_or_speak_as_a_member(
    relay: Any, make_agent: Any
) -> None:
    from p2p_comm.protocol.group import session_id
    from p2p_comm.protocol.wire import WireMessage
    from tests.faults import RawPeer

    a, b, c = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    call_id = connect(a, b, "members only")
    _invite(a, c, call_id)
    events_of(b, "participant_joined")
    keys = {agent.name: agent.json("whoami")["pubkey"] for agent in (a, b, c)}
    mallory = RawPeer(relay.url)

    def forged(call: str, seq: int) -> WireMessage:
        body = {"text": f"forged on {call[:8]}", "part": 1, "parts": 1}
        return WireMessage("message", call, seq, body=body)

    ben_cat = session_id(call_id, keys["ben"], keys["cat"])
    mallory.publish(
        # On the group's own id and on a member-to-member session id, as itself.
        mallory.wrap(keys["ben"], forged(call_id, 2)),
        mallory.wrap(keys["cat"], forged(ben_cat, 1)),
        # Speaking as ann: a rumor naming ann, sealed by mallory.
        _impersonating_wrap(mallory.keys, keys["ann"], keys["ben"], forged(call_id, 2).encode()),
    )
    wait_until(
        lambda: sum(b.json("status")["security"]["dropped"].values()) >= 2,
        20,
        "ben to drop the forgeries",
    )
    a.json("send", "the real one", "--call", call_id[:8])
    for agent in (b, c):
        got = _messages(agent, 1)
        assert [e["text"] for e in got] == ["the real one"]
        assert got[0]["peer"]["name"] == "ann"
    leftovers = b.json("inbox")["events"] + c.json("inbox")["events"]
    assert not [e for e in leftovers if "forged" in json.dumps(e)]


def test_a_group_sendfile_is_the_one_sendfile(relay: Any, make_agent: Any) -> None:
    """The group layer had its own copy of `sendfile`, already diverged: it never said
    when the file was durably queued (an agent that lost the daemon then could not know it
    would still go out, and sent it again) and cut every session's chunks to one size,
    whatever each peer's relays take."""
    a, b, c = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    call_id = connect(a, b, "files for all")
    _invite(a, c, call_id)
    events_of(a, "participant_joined")
    data = os.urandom(40_000)
    progress: list[dict[str, Any]] = []
    params = {"name": "all.bin", "data": base64.b64encode(data).decode(), "call": call_id}
    result = rpc.request(a.paths.socket, "sendfile", params, on_progress=progress.append)
    queued = [p for p in progress if p.get("queued")]
    assert queued and queued[0]["call_id"] == call_id, progress
    assert queued[0]["sha256"] == result["sha256"] == hashlib.sha256(data).hexdigest()
    for agent in (b, c):
        (event,) = events_of(agent, "file", timeout=40)
        assert Path(event["path"]).read_bytes() == data


def test_history_limit_counts_groups_and_calls_alike(relay: Any, make_agent: Any) -> None:
    """`history --limit` cut the list of 1:1 sessions first and added every group after
    it: with a group's hidden sessions newest, `--limit 2` showed only the group. Now the
    visible calls (groups and 1:1 calls) are one list, newest first, cut once."""
    a, b, c = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    first = connect(a, b, "a one-to-one first")
    a.json("end", "--call", first[:8])
    events_of(b, "call_ended")
    group = connect(a, b, "then a group")
    _invite(a, c, group)
    events_of(a, "participant_joined")
    listed = a.json("history", "--limit", "2")["calls"]
    assert [(c["call_id"], c["group"]) for c in listed] == [(group, True), (first, False)]
    (newest,) = a.json("history", "--limit", "1")["calls"]
    assert newest["call_id"] == group
