"""Forward secrecy through real daemons (docs/PROTOCOL.md 3.12, issue 22).

The whole-home theft: every wrap a relay stored during a call, and both agents' homes
taken after it ended, identity files and databases included; nothing of the call's
messages or files decrypts. And a peer that set up the ratchet cannot send content
without it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2p_comm import rpc
from p2p_comm.harness import Agent, wait_until
from p2p_comm.nostr import nip59
from p2p_comm.protocol import ratchet
from p2p_comm.protocol.wire import WireMessage
from tests.conftest import AgentFactory
from tests.faults import RawPeer, identity_keys
from tests.integration.calls_helpers import connect, events_of, start_agents
from tests.relaysim import simulated_relay

SECRETS = (
    "the password is hunter2",
    "acquire ACME at $40",
    "while you were away: the vault code is 4711",
    "escalate: the board must sign",
    "thanks, secret merger done",
)
FILE_MARK = b"FILE-CONTENT-CONFIDENTIAL-"


def _wraps_for(url: str, *pubkeys: str) -> list[Any]:
    """Every gift wrap the relay holds for ``pubkeys``."""

    async def fetch() -> list[Any]:
        ns.uniffi_set_event_loop(asyncio.get_running_loop())
        client = ns.Client()
        await client.add_relay(ns.RelayUrl.parse(url))
        await client.connect()
        try:
            query = (
                ns.Filter().kind(ns.Kind(1059)).pubkeys([ns.PublicKey.parse(p) for p in pubkeys])
            )
            events = await client.fetch_events(
                ns.ReqTarget.auto([query]), timeout=timedelta(seconds=5)
            )
        finally:
            await client.shutdown()
        return list(events) if isinstance(events, list) else list(events.to_vec())

    return asyncio.run(fetch())


def _home_key_material(agent: Agent) -> set[bytes]:
    """Every 32-byte value written in hex anywhere in the agent's home (its database and
    WAL included): candidate keys for a thief."""
    found: set[bytes] = set()
    for path in agent.paths.home.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for match in re.finditer(rb"[0-9a-fA-F]{64}", data):
            found.add(bytes.fromhex(match.group().decode()))
    return found


def _try_ratchet(ciphertext: bytes, ad: bytes, candidates: set[bytes]) -> bytes | None:
    """A thief's attempts on one ratchet message: every candidate as its message key, as a
    chain key some steps back, and as our ratchet private key with each candidate as root."""
    header, body = ratchet.split_message(ciphertext)
    full_ad = ad + ciphertext[: ratchet.HEADER_BYTES]
    for key in candidates:
        for_chain = key
        for _ in range(header.n + 2):
            for_chain, mk = ratchet.kdf_ck(for_chain)
            try:
                return ratchet.decrypt_with(mk, body, full_ad)
            except ratchet.RatchetError:
                pass
        try:
            return ratchet.decrypt_with(key, body, full_ad)
        except ratchet.RatchetError:
            pass
        try:
            shared = ratchet.dh(key, header.dh)
        except (ratchet.RatchetError, ValueError):
            continue
        for root in candidates:
            _, ck = ratchet.kdf_rk(root, shared)
            for _ in range(header.n + 1):
                ck, mk = ratchet.kdf_ck(ck)
            try:
                return ratchet.decrypt_with(mk, body, full_ad)
            except ratchet.RatchetError:
                pass
    return None


def _readable(
    wraps: list[Any], alice: Agent, bob: Agent, call_id: str, alice_pub: str, bob_pub: str
) -> tuple[list[str], int]:
    """The theft: both identities and everything else in both homes, tried on every wrap
    (with the call's public initial root key too); what reads, and how many wraps carried
    ratchet seals."""
    stolen = {alice_pub: identity_keys(alice), bob_pub: identity_keys(bob)}
    ad = ratchet.associated_data(call_id, alice_pub, bob_pub)
    candidates = _home_key_material(alice) | _home_key_material(bob) | {ratchet.initial_root(ad)}
    readable: list[str] = []
    ratcheted = 0
    for wrap in wraps:
        receiver = next(t[1] for t in json.loads(wrap.as_json())["tags"] if t[0] == "p")
        keys = stolen[receiver]
        try:  # nostr-sdk's standard unwrap, with the stolen identity key
            readable.append(ns.UnwrappedGift.from_gift_wrap(keys, wrap).rumor().content())
            continue
        except Exception:
            pass
        sealed = nip59.open_wrap(keys, wrap)  # the outer layer opens: the seal inside
        assert sealed.call == call_id
        ratcheted += 1
        plain = _try_ratchet(base64.b64decode(sealed.content), ad, candidates)
        if plain is not None:
            readable.append(json.loads(plain)["content"])
    return readable, ratcheted


def _nothing_readable(
    wraps: list[Any],
    alice: Agent,
    bob: Agent,
    call_id: str,
    alice_pub: str,
    bob_pub: str,
    minimum: int,
) -> None:
    """Nothing but the set-up reads from ``wraps`` with both homes."""
    readable, ratcheted = _readable(wraps, alice, bob, call_id, alice_pub, bob_pub)
    # Only the set-up travels outside the ratchet: the request (topic), the callee's
    # receipt of it, the accept; nothing after it.
    documents = [json.loads(text) for text in readable]
    assert {d["type"] for d in documents} <= {"request", "accept", "ack"}, documents
    assert ratcheted >= minimum
    for text in readable:
        for secret in SECRETS:
            assert secret not in text
        assert base64.b64encode(FILE_MARK[:24]).decode()[:16] not in text


def _relay_wrap_count(url: str, pubkey: str) -> int:
    return len(_wraps_for(url, pubkey))


def test_a_stolen_home_reads_nothing_of_a_finished_call(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    call_id = connect(alice, bob, "secret merger plans")

    alice.json("send", SECRETS[0])
    bob.json("send", SECRETS[1])
    assert events_of(bob, "message")[0]["text"] == SECRETS[0]
    assert events_of(alice, "message")[0]["text"] == SECRETS[1]
    payload = FILE_MARK * 1500  # three chunks
    source = tmp_path / "plans.bin"
    source.write_bytes(payload)
    alice.json("sendfile", "plans.bin", "--path", str(source))
    assert Path(events_of(bob, "file")[0]["path"]).read_bytes() == payload

    # Bob away mid-call: alice's message is re-sent (retransmits: fresh wraps of the same
    # ratchet ciphertext) until bob, back, takes it once and receipts the copies.
    bob_pub = bob.json("whoami")["pubkey"]
    bob.run("daemon", "stop")
    before = _relay_wrap_count(relay.url, bob_pub)
    alice.json("send", SECRETS[2])
    wait_until(lambda: _relay_wrap_count(relay.url, bob_pub) >= before + 2, 30, "a re-send")
    bob.run("daemon", "start")
    assert [e["text"] for e in events_of(bob, "message", timeout=30)] == [SECRETS[2]]

    bob.json("escalate", SECRETS[3])
    assert events_of(alice, "escalation")[0]["text"] == SECRETS[3]
    alice.json("end", SECRETS[4])
    assert events_of(bob, "call_ended")[0]["reason"] == SECRETS[4]
    for agent in (alice, bob):
        wait_until(
            lambda a=agent: a.json("history")["calls"][0]["unacked"] == 0, 30, "all receipted"
        )
    records = [agent.json("history")["calls"][0] for agent in (alice, bob)]
    markdown = (alice.paths.transcripts / f"{call_id}.md").read_text()

    for agent in (alice, bob):
        agent.run("daemon", "stop")
    alice_pub = alice.json("whoami")["pubkey"]
    wraps = _wraps_for(relay.url, alice_pub, bob_pub)
    assert len(wraps) >= 12, len(wraps)

    _nothing_readable(wraps, alice, bob, call_id, alice_pub, bob_pub, minimum=9)
    for agent in (alice, bob):  # the ratchet state went with the call
        with sqlite3.connect(agent.paths.database) as db:
            assert db.execute("SELECT COUNT(*) FROM ratchets").fetchone()[0] == 0
    # Both sides say so: in the call's description and in the transcript.
    assert [(r.get("forward_secrecy"), r["state"]) for r in records] == [(True, "ended")] * 2
    assert "- forward secrecy: yes" in markdown


def test_a_peer_that_set_up_the_ratchet_cannot_send_without_it(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory
) -> None:
    (agent,) = start_agents(relay.url, make_agent, "agent")
    peer = RawPeer(relay.url)
    me = agent.json("whoami")["pubkey"]
    call_id = "ab" * 16
    ek = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    body = {"topic": "raw", "name": "raw", "pv": 5, "ek": ek}
    peer.publish(peer.wrap(me, WireMessage("request", call_id, 1, body=body)))
    events_of(agent, "call_request")
    agent.json("answer", "accept", "--call", call_id[:8])
    downgraded = WireMessage(
        "message", call_id, 2, body={"text": "in clear", "part": 1, "parts": 1}
    )
    later = WireMessage("end", call_id, 3, body={"reason": "bye"})
    peer.publish(peer.wrap(me, downgraded), peer.wrap(me, later))
    # The `end` after it is held for the missing seq 2, which never comes: the downgraded
    # message was refused, not delivered and not receipted.
    wait_until(lambda: "sent without the ratchet" in agent.paths.log.read_text(), 20, "the refusal")
    events = agent.json("wait", "--timeout", "1", check=False).get("events", [])
    assert not [e for e in events if e["type"] == "message"], events
    acks = [d for d in peer.received() if d.get("type") == "ack" or d.get("ack")]
    assert all(d.get("ack", 0) < 2 for d in acks), acks
    assert agent.json("history")["calls"][0]["forward_secrecy"] is True


def test_a_state_copied_mid_call_reads_nothing_after_one_round_trip(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory
) -> None:
    """Healing through the daemons: bob's whole ratchet state, copied from its database
    mid-call, with its identity key, reads alice's next message (that is what a compromise
    is) and nothing once bob has answered and alice has spoken again."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    call_id = connect(alice, bob)
    alice.json("send", "before the theft")
    events_of(bob, "message")
    with sqlite3.connect(bob.paths.database) as db:
        (state,) = db.execute("SELECT state FROM ratchets WHERE call_id = ?", (call_id,)).fetchone()
    alice.json("send", "still exposed")
    events_of(bob, "message")
    bob.json("send", "the answer that heals")
    events_of(alice, "message")
    alice.json("send", "healed: the new plan")
    events_of(bob, "message")

    bob_pub = bob.json("whoami")["pubkey"]
    stolen = ratchet.Session.from_dict(json.loads(state))
    keys = identity_keys(bob)
    read: list[str] = []
    for wrap in _wraps_for(relay.url, bob_pub):
        sealed = nip59.open_wrap(keys, wrap)
        if sealed.call != call_id:
            continue
        try:
            rumor = stolen.decrypt(base64.b64decode(sealed.content), now=wrap_time(wrap))
        except ratchet.RatchetError:
            continue
        read.append(json.loads(json.loads(rumor)["content"]).get("text", ""))
    assert "still exposed" in read
    assert "healed: the new plan" not in read


def wrap_time(wrap: Any) -> float:
    return float(wrap.created_at().as_secs())


def test_require_forward_secrecy_turns_older_peers_away(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory
) -> None:
    """With `require_forward_secrecy`, a call from a peer that cannot set up the ratchet is
    refused, and the caller hears why; one that can is taken as usual. Without the setting,
    no transcript is kept if `keep_transcripts` is false."""
    (agent,) = start_agents(
        relay.url, make_agent, "agent", require_forward_secrecy="true", keep_transcripts="false"
    )
    me = agent.json("whoami")["pubkey"]
    old, new = RawPeer(relay.url), RawPeer(relay.url)
    old_call, new_call = "cd" * 16, "ef" * 16
    older = {"topic": "t", "name": "o", "pv": 4}
    old.publish(old.wrap(me, WireMessage("request", old_call, 1, body=older)))
    ek = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    body = {"topic": "t", "name": "n", "pv": 5, "ek": ek}
    new.publish(new.wrap(me, WireMessage("request", new_call, 1, body=body)))
    (request,) = events_of(agent, "call_request")
    assert request["call_id"] == new_call
    rejects = wait_until(
        lambda: [d for d in old.received() if d.get("type") == "reject"], 20, "the refusal"
    )
    assert rejects[0]["reason"] == "this agent takes only calls with forward secrecy"
    agent.json("answer", "reject", "--call", new_call[:8])
    wait_until(lambda: [d for d in new.received() if d.get("type") == "reject"], 20, "the reject")
    folder = agent.paths.transcripts
    assert not folder.exists() or not list(folder.iterdir())

    # Calling out: a peer whose presence announces no feature level 5 is not rung at all.
    old.publish(old.presence("oldtimer", int(time.time())))
    wait_until(lambda: "oldtimer" in agent.online_names(), 20, "the old peer's presence")
    refused = agent.run("call", "oldtimer", "t", check=False)
    assert refused.returncode == 1, refused
    assert "without forward secrecy" in refused.stderr + refused.stdout
    assert [d for d in old.received() if d.get("type") == "request"] == []


@pytest.mark.timeout(240)
def test_a_backlog_longer_than_max_skip_arrives_on_catch_up(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory
) -> None:
    """2,500 messages while the peer is away: one ratchet chain far longer than MAX_SKIP,
    and the catch-up gets them newest page first, in no order. Every one arrives, once."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    connect(alice, bob)
    bob.run("daemon", "stop")
    sent = [f"backlog {index}" for index in range(2 * ratchet.MAX_SKIP + 500)]
    for text in sent:
        rpc.request(alice.paths.socket, "send", {"text": text}, timeout=30)
    bob.run("daemon", "start")
    messages = events_of(bob, "message", len(sent), timeout=120)
    assert [m["text"] for m in messages] == sent


def test_a_stolen_home_reads_no_fragment_either(  # type: ignore[no-untyped-def]
    make_agent: AgentFactory, tmp_path: Path
) -> None:
    """The same theft where the relay takes 32 KiB at most: file chunks refused as too large
    travel again as `frag` pieces, each piece its own ratchet message."""
    with simulated_relay(max_event_bytes=32768, declared_max_message_length=131072) as sim:
        alice, bob = start_agents(sim.url, make_agent, "alice", "bob")
        call_id = connect(alice, bob, "secret merger plans")
        payload = FILE_MARK * 5000  # 130 KB: chunks cut for 128 KiB, refused, sent in pieces
        source = tmp_path / "plans.bin"
        source.write_bytes(payload)
        alice.json("sendfile", "plans.bin", "--path", str(source))
        assert Path(events_of(bob, "file", timeout=30)[0]["path"]).read_bytes() == payload
        alice.json("end", SECRETS[4])
        events_of(bob, "call_ended")
        for agent in (alice, bob):
            wait_until(
                lambda a=agent: a.json("history")["calls"][0]["unacked"] == 0, 30, "receipts"
            )
        assert re.search(r"seq \d+ sent in \d+ fragments", alice.paths.log.read_text())
        for agent in (alice, bob):
            agent.run("daemon", "stop")
        alice_pub, bob_pub = (a.json("whoami")["pubkey"] for a in (alice, bob))
        wraps = _wraps_for(sim.url, alice_pub, bob_pub)
        _nothing_readable(wraps, alice, bob, call_id, alice_pub, bob_pub, minimum=10)


def test_without_transcripts_a_finished_call_leaves_no_message_text_in_the_home(
    relay: Any, make_agent: AgentFactory
) -> None:
    """`keep_transcripts = false` deleted a call's transcript entries at its end, but every
    event the agent had read stayed in the database's inbox, message text and all, for
    good: a home taken after the call still read the call. Now the agent's acknowledged
    events go with them (they are the agent's to keep, and it has them)."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", keep_transcripts="false")
    connect(alice, bob, "the vault")
    bob.json("send", "the vault code is 4-8-15-16")
    assert events_of(alice, "message")[0]["text"] == "the vault code is 4-8-15-16"
    alice.json("send", "noted: 23-42")
    assert events_of(bob, "message")[0]["text"] == "noted: 23-42"
    alice.json("end")
    events_of(bob, "call_ended")
    wait_until(lambda: alice.json("status")["calls"]["active"] == [], 20, "the end at alice")
    for agent in (alice, bob):
        agent.json("inbox")  # what is left unread (the end), read and acknowledged
        agent.run("daemon", "stop")
    for agent in (alice, bob):
        for path in agent.paths.home.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for text in (b"4-8-15-16", b"23-42"):
                    assert text not in data, (agent.name, path.name, text)


def test_a_groups_roster_sessions_get_a_ratchet_too(relay: Any, make_agent: AgentFactory) -> None:
    """The session between two members that only the roster introduced had no request or
    accept to carry keys: it ran on the identity keys for the whole call, and a stolen home
    read every message between them. Now the initiator's first message on it carries its
    key; after one round trip both directions run under the ratchet, and stolen homes read
    neither member's later messages from the relay."""
    ann, ben, cat = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    call_id = connect(ann, ben, "the group")
    ann.json("invite", "cat", "--call", call_id[:8])
    events_of(cat, "call_request")
    cat.json("answer", "accept", "--call", call_id[:8])
    for agent in (ann, ben, cat):
        events_of(agent, "participant_joined")
    keys = {a.name: a.json("whoami")["pubkey"] for a in (ben, cat)}
    first, second = sorted((ben, cat), key=lambda a: keys[a.name])  # initiator: lower key

    def said(agent: Agent, text: str, listeners: tuple[Agent, ...]) -> None:
        agent.json("send", text, "--call", call_id[:8])
        for listener in listeners:
            got = events_of(listener, "message", timeout=30)[0]
            assert got["text"] == text, (listener.name, got)

    # The set-up round trip on the ben-cat session (its first messages may be plain).
    said(first, "warm-up one", (second, ann))
    said(second, "warm-up two", (first, ann))
    said(first, "warm-up three", (second, ann))
    secrets = {first: "the password is hunter2", second: "acquire ACME at $40"}
    said(first, secrets[first], (second, ann))
    said(second, secrets[second], (first, ann))
    _end_group(call_id, ann, ben, cat)

    readable, ratcheted = _between(relay.url, (ann, ben, cat), keys)
    assert ratcheted >= 3, (ratcheted, readable)
    for text in readable:
        for secret in secrets.values():
            assert secret not in text


def _end_group(call_id: str, starter: Agent, *members: Agent) -> None:
    """The starter ends the group for all; once the members hear it, every daemon stops."""
    starter.json("end", "--all", "--call", call_id[:8])
    for agent in members:
        events_of(agent, "call_ended")
    for agent in (starter, *members):
        agent.run("daemon", "stop")


def _between(url: str, agents: tuple[Agent, ...], keys: dict[str, str]) -> tuple[list[str], int]:
    """The wraps the relay holds between the members ``keys`` names, tried with every
    agent's stolen identity: the contents that read, and how many did not (ratchet seals)."""
    stolen = {a.json("whoami")["pubkey"]: identity_keys(a) for a in agents}
    readable: list[str] = []
    ratcheted = 0
    for wrap in _wraps_for(url, *keys.values()):
        receiver = next(t[1] for t in json.loads(wrap.as_json())["tags"] if t[0] == "p")
        if nip59.open_wrap(stolen[receiver], wrap).sender not in keys.values():
            continue  # from the starter: the sessions of its invitations (tested as 1:1)
        try:
            readable.append(
                ns.UnwrappedGift.from_gift_wrap(stolen[receiver], wrap).rumor().content()
            )
        except Exception:
            ratcheted += 1
    return readable, ratcheted


TOPIC = "secret merger plans"


def _prekeys_of(agent: Agent) -> set[str]:
    """The prekeys (public, hex) the agent's home holds."""
    with sqlite3.connect(agent.paths.database) as db:
        rows = db.execute("SELECT key FROM settings WHERE key LIKE 'prekey:%'").fetchall()
    return {key.split(":", 1)[1] for (key,) in rows}


def test_a_requests_contents_are_unreadable_once_the_callees_prekey_is_erased(
    relay: Any, make_agent: AgentFactory
) -> None:
    """The request (its topic, the caller's name) used to travel in a NIP-44 seal: a key
    stolen at any later time read it from the relay. Now it is encrypted to the callee's
    signed prekey from its presence; once the callee has replaced that prekey and kept it
    the two days and an hour a late request may need, nothing in either home reads it."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    alice_pub, bob_pub = (a.json("whoami")["pubkey"] for a in (alice, bob))
    (announced,) = _prekeys_of(bob)
    call_id = connect(alice, bob, TOPIC)
    alice.json("send", SECRETS[0])
    assert events_of(bob, "message")[0]["text"] == SECRETS[0]
    alice.json("end", "bye")
    events_of(bob, "call_ended")
    for agent in (alice, bob):
        wait_until(
            lambda a=agent: a.json("history")["calls"][0]["unacked"] == 0, 30, "all receipted"
        )
        agent.run("daemon", "stop")
    wraps = _wraps_for(relay.url, alice_pub, bob_pub)
    to_bob = _wraps_for(relay.url, bob_pub)
    to_bob = [w for w in to_bob if nip59.open_wrap(identity_keys(bob), w).prekey == announced]
    assert len(to_bob) == 1, "the request, and only it, names the prekey"

    # Stolen today, bob's home still holds the prekey: the request reads (SECURITY.md
    # states this bound), and nothing after it does.
    readable, _ = _readable(wraps, alice, bob, call_id, alice_pub, bob_pub)
    assert [t for t in readable if TOPIC in t], readable
    assert all(SECRETS[0] not in t for t in readable)

    # Three days on, bob's daemon has replaced the prekey, and erased it.
    bob.env["P2P_CLOCK_OFFSET"] = str(3 * 86400 + 7200)
    bob.run("daemon", "start")
    wait_until(lambda: announced not in _prekeys_of(bob), 30, "the old prekey erased")
    assert len(_prekeys_of(bob)) == 1  # the new one
    bob.run("daemon", "stop")
    readable, ratcheted = _readable(wraps, alice, bob, call_id, alice_pub, bob_pub)
    assert not [t for t in readable if TOPIC in t], readable
    assert {json.loads(t)["type"] for t in readable} <= {"accept", "ack"}, readable
    assert ratcheted >= 3


def _request_to_prekey(
    peer: RawPeer, callee: str, call_id: str, prekey: str
) -> tuple[Any, ratchet.Session]:
    """A request encrypted to ``prekey`` as docs/PROTOCOL.md 3.12.2 and 3.12.7 say, made
    by hand: the rumor under the ratchet, its seal tagged with the call and the prekey;
    with the caller's session, to read the answer."""
    session, keys = ratchet.initiator_session(
        call_id, peer.pubkey, callee, ratchet.new_key(), bytes.fromhex(prekey)
    )
    body = {"topic": TOPIC, "name": "raw", "pv": 5, **keys.to_dict()}
    now = int(time.time())
    rumor = nip59.make_rumor(
        peer.pubkey, 25714, WireMessage("request", call_id, 1, body=body).encode(), now
    )
    sealed = base64.b64encode(session.encrypt(rumor.to_json().encode())).decode()
    return nip59.wrap_ratchet(peer.keys, callee, call_id, sealed, now, now, prekey=prekey), session


def test_a_request_to_the_callees_prekey_rings_and_one_to_an_unknown_prekey_is_dropped(
    relay: Any, make_agent: AgentFactory
) -> None:
    """Written from docs/PROTOCOL.md by hand: a request to the agent's announced prekey
    rings with its topic, and the accept answers under the ratchet; one naming a prekey the
    agent does not hold cannot be read, so it rings nothing and is counted."""
    (agent,) = start_agents(relay.url, make_agent, "agent")
    me = agent.json("whoami")["pubkey"]
    wait_until(lambda: _prekeys_of(agent), 20, "the agent's first presence")
    (prekey,) = _prekeys_of(agent)
    stranger = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    peer = RawPeer(relay.url)
    peer.publish(_request_to_prekey(peer, me, "cd" * 16, stranger)[0])
    wait_until(
        lambda: agent.json("status")["security"]["dropped"].get("unwrap_failed", 0) >= 1,
        20,
        "the drop",
    )
    assert "a prekey we do not hold" in agent.paths.log.read_text()

    wrap, session = _request_to_prekey(peer, me, "ab" * 16, prekey)
    peer.publish(wrap)
    (request,) = events_of(agent, "call_request")
    assert (request["call_id"], request["topic"]) == ("ab" * 16, TOPIC)
    agent.json("answer", "accept", "--call", "abab")

    answers: list[dict[str, Any]] = []

    def accept() -> bool:
        for answer in _wraps_for(relay.url, peer.pubkey):
            sealed = nip59.open_wrap(peer.keys, answer)
            if sealed.call == "ab" * 16:
                plain = session.decrypt(base64.b64decode(sealed.content), now=time.time())
                answers.append(json.loads(json.loads(plain)["content"]))
                return True
        return False

    wait_until(accept, 20, "the accept, under the ratchet")
    assert answers[0]["type"] == "accept"
    assert agent.json("history")["calls"][0]["forward_secrecy"] is True
    assert not [c for c in agent.json("history")["calls"] if c["call_id"] == "cd" * 16]


def test_with_forward_secrecy_required_a_roster_session_sends_no_content_before_its_ratchet(
    relay: Any, make_agent: AgentFactory
) -> None:
    """A group's session made from a roster used to send what came first sealed to the
    identity keys (a stolen key read it), whatever `require_forward_secrecy` said. Now an
    agent that requires it keeps such content waiting until the session's ratchet is up,
    and the responder answers the initiator's key at once, so nothing waits long.

    The order that exposed it: the member already in the call greets the newcomer first,
    before it has the ratchet; the newcomer, the initiator (lower key), greets back with
    its key; the responder then had nothing to send, so the initiator's first content went
    without the ratchet."""
    settings = {"require_forward_secrecy": "true"}
    ann, one, two = start_agents(relay.url, make_agent, "ann", "one", "two", **settings)
    keys = {a.name: a.json("whoami")["pubkey"] for a in (one, two)}
    newcomer, member = sorted((one, two), key=lambda a: keys[a.name])  # initiator: lower key
    call_id = connect(ann, member, "the group")
    ann.json("invite", newcomer.name, "--call", call_id[:8])
    events_of(newcomer, "call_request")
    newcomer.json("answer", "accept", "--call", call_id[:8])
    for agent in (ann, member, newcomer):
        events_of(agent, "participant_joined")
    # No warm-up: the newcomer speaks the moment it has joined, then the member.
    secrets = {newcomer: "the password is hunter2", member: "acquire ACME at $40"}
    for agent, text in secrets.items():
        agent.json("send", text, "--call", call_id[:8])
        other = member if agent is newcomer else newcomer
        texts = [e["text"] for e in events_of(other, "message", count=1, timeout=30)]
        assert texts == [text], (other.name, texts)
    _end_group(call_id, ann, member, newcomer)

    readable, ratcheted = _between(relay.url, (ann, member, newcomer), keys)
    plain = [json.loads(text) for text in readable]
    assert {d["type"] for d in plain} <= {"roster", "ack"}, plain
    assert ratcheted >= 2, (ratcheted, plain)
