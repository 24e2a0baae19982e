"""A hostile inviter cannot fake a group: what it says about others is not believed.

The inviter is a raw key speaking the protocol by hand (docs/PROTOCOL.md 3.10): its
invitation names a real agent (bob) as the starter and lists members who never joined,
bob's key under the name "carol" and a key nobody runs. The invitee accepts.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from p2p_comm.daemon.relays.directory import npub_of
from p2p_comm.harness import wait_until
from p2p_comm.protocol.group import session_id
from p2p_comm.protocol.wire import WireMessage
from tests.faults import RawPeer, identity_keys
from tests.integration.calls_helpers import connect, events_of, start_agents


def _outbox_rows(database: Any, call_ids: list[str]) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(call_ids))
        query = f"SELECT COUNT(*) FROM outbox WHERE call_id IN ({marks})"
        return int(connection.execute(query, call_ids).fetchone()[0])
    finally:
        connection.close()


def test_a_hostile_inviter_cannot_fake_the_starter_or_the_members(
    relay: Any, make_agent: Any
) -> None:
    vic, bob = start_agents(relay.url, make_agent, "vic", "bob")
    keys = {agent.name: agent.json("whoami")["pubkey"] for agent in (vic, bob)}
    mallory, ghost = RawPeer(relay.url), RawPeer(relay.url)  # ghost: a key that never joined
    group = secrets.token_hex(16)
    invitation = WireMessage(
        "request",
        session_id(group, mallory.pubkey, keys["vic"]),
        1,
        body={
            "topic": "the quarterly plan",
            "name": "mallory",
            "pv": 4,
            "group": group,
            "starter": keys["bob"],
            "roster": [
                [keys["bob"], "carol"],
                [mallory.pubkey, "mallory"],
                [ghost.pubkey, "dave"],
                [keys["vic"], "vic"],
            ],
            "invite": "starter",
        },
    )
    mallory.publish(mallory.wrap(keys["vic"], invitation))

    (request,) = events_of(vic, "call_request")
    assert request["call_id"] == group and request["group"] is True
    # The starter shown is the inviter: bob never said he started anything.
    assert request["starter"]["npub"] == npub_of(mallory.pubkey)
    listed = {p["npub"]: p["name"] for p in request["participants"]}
    assert listed.get(npub_of(keys["bob"])) == "bob"  # bob's own presence, not "carol"
    assert "carol" not in listed.values() and "dave" not in listed.values()

    vic.json("answer", "accept", "--call", group[:8])
    (call,) = vic.json("status")["calls"]["active"]
    assert call["call_id"] == group and call["starter"]["npub"] == npub_of(mallory.pubkey)
    shown = {p["npub"]: p for p in call["participants"]}
    assert shown[npub_of(mallory.pubkey)]["state"] == "in"
    assert shown[npub_of(keys["bob"])]["state"] == "unconfirmed"
    assert shown[npub_of(keys["bob"])]["name"] == "bob"
    assert shown[npub_of(ghost.pubkey)]["state"] == "unconfirmed"
    assert shown[npub_of(ghost.pubkey)]["name"] in ("", npub_of(ghost.pubkey)[:16])
    assert not {"carol", "dave"} & {p["name"] for p in call["participants"]}

    # vic's messages go to the inviter only: nothing is queued or sent to the others.
    sent = vic.json("send", "hello everyone", "--call", group[:8])
    assert sent["recipients"] == 1

    def inviter_has_it() -> bool:
        return any(d.get("text") == "hello everyone" for d in mallory.received())

    wait_until(inviter_has_it, 20, "the inviter to get vic's message")
    unconfirmed = [session_id(group, keys["vic"], pk) for pk in (keys["bob"], ghost.pubkey)]
    assert _outbox_rows(vic.paths.database, unconfirmed) == 0
    assert ghost.received() == []
    assert RawPeer(relay.url, identity_keys(bob)).received() == []  # nothing was sent to bob
    security = bob.json("status")["security"]
    assert security["unwrapped"] == 0 and not any(security["dropped"].values())
    assert not bob.json("inbox")["events"]
    described = vic.json("status")["calls"]["active"][0]
    assert {p["state"] for p in described["participants"][1:]} == {"in", "unconfirmed"}
    assert json.dumps(described).count("carol") == 0


def test_where_anyone_may_invite_the_starter_is_believed_from_its_own_greeting(
    relay: Any, make_agent: Any
) -> None:
    """cat (not the starter) invites dan: dan shows cat as the starter until ann, named
    starter by cat's invitation, greets dan herself; each member is in once it greeted."""
    a, b, c, d = start_agents(relay.url, make_agent, "ann", "ben", "cat", "dan")
    call_id = connect(a, b, "open invitations")
    a.json("invite", "cat", "--call", call_id[:8], "--anyone-may-invite")
    events_of(c, "call_request")
    c.json("answer", "accept", "--call", call_id[:8])
    events_of(c, "participant_joined")  # ben greeted cat
    c.json("invite", "dan", "--call", call_id[:8])
    (request,) = events_of(d, "call_request")
    assert request["starter"]["name"] == "cat"  # the inviter, until ann says otherwise
    d.json("answer", "accept", "--call", call_id[:8])
    joined = {e["peer"]["name"] for e in events_of(d, "participant_joined", 2)}
    assert joined == {"ann", "ben"}
    (group,) = d.json("status")["calls"]["active"]
    assert group["starter"]["name"] == "ann"
    assert {p["name"]: p["state"] for p in group["participants"]} == {
        "dan": "me",
        "cat": "in",
        "ann": "in",
        "ben": "in",
    }
    for agent in (a, b):  # ben (a 1:1 callee) heard of dan from the starter, then from dan
        names = {e["peer"]["name"] for e in events_of(agent, "participant_joined", 2)}
        assert names == {"cat", "dan"}
    d.json("send", "hello from dan", "--call", call_id[:8])
    for agent in (a, b, c):
        (got,) = events_of(agent, "message")
        assert got["text"] == "hello from dan" and got["peer"]["name"] == "dan"
