"""The public-relay simulator: each policy, driven by raw websockets and raw nostr-sdk clients.

The wording assertions matter: the product (and nostr-sdk) react to the machine-readable
prefixes, and these are the words the modelled relays actually send.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import nostr_sdk as ns
import pytest
from websockets.asyncio.client import ClientConnection, connect

from p2p_comm.harness import RelayProcess
from tests.relaysim import Policies, RelaySim, SimServer, pow_bits

WEEK = 7 * 86400


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """One real relay for the module: every test uses fresh keys, so they do not meet."""
    process = RelayProcess().start()
    yield process.url
    process.stop()


Scenario = Callable[[SimServer], Awaitable[None]]


def run_sim(upstream: str, scenario: Scenario, **switches: Any) -> None:
    async def main() -> None:
        ns.uniffi_set_event_loop(asyncio.get_running_loop())
        async with SimServer(upstream, Policies.build(**switches)) as sim:
            await asyncio.wait_for(scenario(sim), 20)

    asyncio.run(main())


class Raw:
    """A bare websocket client: sees every frame the relay sends, word for word."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, *message: Any) -> None:
        await self.ws.send(json.dumps(list(message)))

    async def recv(self, timeout: float = 3.0) -> list[Any]:
        return list(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))

    async def until(self, verb: str, timeout: float = 3.0) -> tuple[list[Any], list[list[Any]]]:
        """Read until a frame starting with ``verb``; returns it and the frames before it."""
        before: list[list[Any]] = []
        while True:
            frame = await self.recv(timeout)
            if frame[0] == verb:
                return frame, before
            before.append(frame)

    async def publish(self, event: Any) -> list[Any]:
        await self.send("EVENT", json.loads(event.as_json()))
        ok, _ = await self.until("OK")
        return ok

    async def query(self, *filters: dict[str, Any], sub: str = "q") -> list[list[Any]]:
        """REQ then everything up to EOSE/CLOSED (that last frame included)."""
        await self.send("REQ", sub, *filters)
        frames = []
        while True:
            frame = await self.recv()
            frames.append(frame)
            if frame[0] in ("EOSE", "CLOSED"):
                return frames

    async def authenticate(self, keys: ns.Keys, challenge: str, url: str) -> list[Any]:
        auth = build(keys, AUTH_KIND, "", [["relay", url], ["challenge", challenge]])
        await self.send("AUTH", json.loads(auth.as_json()))
        ok, _ = await self.until("OK")
        return ok


AUTH_KIND = 22242


async def raw(url: str) -> Raw:
    return Raw(await connect(url, max_size=None))


def build(
    keys: ns.Keys,
    kind: int,
    content: str = "",
    tags: list[list[str]] | None = None,
    created_at: int | None = None,
) -> Any:
    builder = ns.EventBuilder(ns.Kind(kind), content).tags([ns.Tag.parse(t) for t in tags or []])
    if created_at is not None:
        builder = builder.custom_created_at(ns.Timestamp.from_secs(created_at))
    return builder.finalize(keys)


def wrap_for(receiver: ns.Keys, text: str = "hello") -> Any:
    return ns.nip17_make_private_msg(ns.Keys.generate(), receiver.public_key(), text)


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def events_in(frames: list[list[Any]]) -> list[dict[str, Any]]:
    return [f[2] for f in frames if f[0] == "EVENT"]


async def sdk_client(url: str, keys: ns.Keys | None = None) -> ns.Client:
    """A nostr-sdk client; with ``keys`` it answers AUTH challenges."""
    builder = ns.ClientBuilder()
    if keys is not None:
        builder = builder.authenticator(ns.SignerAuthenticator(keys))
    client = builder.build()
    await client.add_relay(ns.RelayUrl.parse(url))
    await client.connect(and_wait=timedelta(seconds=3))
    return client


def inbox_filter(keys: ns.Keys) -> Any:
    since = ns.Timestamp.from_secs(int(time.time()) - WEEK)
    return ns.Filter().kind(ns.Kind(1059)).pubkey(keys.public_key()).since(since)


async def fetch_ids(client: ns.Client, *filters: Any, timeout: float = 1.5) -> set[str]:
    events = await client.fetch_events(
        ns.ReqTarget.auto(list(filters)), timeout=timedelta(seconds=timeout)
    )
    return {e.id().to_hex() for e in events}


def p_filter(keys: ns.Keys) -> dict[str, Any]:
    return {"kinds": [1059], "#p": [keys.public_key().to_hex()], "since": int(time.time()) - WEEK}


# -- NIP-42 ---------------------------------------------------------------------------


def test_strfry_auth_challenges_only_a_fully_restricted_req(upstream: str) -> None:
    bob, carol = ns.Keys.generate(), ns.Keys.generate()
    wrap = wrap_for(bob)
    note = build(ns.Keys.generate(), 30078, "public", [["d", "x"]])

    async def scenario(sim: SimServer) -> None:
        writer = await raw(sim.url)
        assert (await writer.publish(wrap))[2] is True
        assert (await writer.publish(note))[2] is True
        public = {"kinds": [30078], "authors": [note.author().to_hex()]}

        # Mixed REQ: no challenge, no CLOSED; the wrap silently withheld.
        reader = await raw(sim.url)
        frames = await reader.query(p_filter(bob), public)
        assert frames[-1] == ["EOSE", "q"]
        assert [e["id"] for e in events_in(frames)] == [note.id().to_hex()]
        assert all(f[0] != "AUTH" for f in frames)

        # Only restricted kinds: challenged and closed, in strfry's words.
        frames = await reader.query(p_filter(bob), sub="dm")
        assert frames[0][0] == "AUTH" and len(frames[0][1]) == 22
        assert frames[-1] == [
            "CLOSED",
            "dm",
            "ERROR: auth-required: requested filter requires authentication",
        ]
        challenge = frames[0][1]
        ok = await reader.authenticate(bob, "wrong", sim.url)
        assert ok[2:] == [False, "error: challenge string mismatch"]
        ok = await reader.authenticate(bob, challenge, "ws://elsewhere.example")
        assert ok[2] is False and "incorrect or missing relay tag" in ok[3]
        ok = await reader.authenticate(bob, challenge, sim.url)
        assert ok[2:] == [True, "successfully authenticated"]
        frames = await reader.query(p_filter(bob), sub="dm2")
        assert [e["id"] for e in events_in(frames)] == [wrap.id().to_hex()]

        # Authenticated as someone not involved: nothing (restrictReadToInvolvedPubkey).
        other = await raw(sim.url)
        challenge = (await other.query(p_filter(bob)))[0][1]
        assert (await other.authenticate(carol, challenge, sim.url))[2] is True
        assert events_in(await other.query(p_filter(bob), sub="again")) == []

        # nostr-sdk authenticates on the challenge but does not re-send a REQ closed with
        # strfry's "ERROR: auth-required: ..." (not the bare NIP-01 prefix): nothing arrives.
        sdk = await sdk_client(sim.url, bob)
        assert await fetch_ids(sdk, inbox_filter(bob)) == set()
        await until(lambda: sim.stats["auth_ok"] >= 3)  # it did authenticate, though
        assert await fetch_ids(sdk, inbox_filter(bob)) == {wrap.id().to_hex()}  # a new REQ works
        await sdk.shutdown()

    run_sim(upstream, scenario, auth_read_kinds=True)


def test_nostr_rs_nip42_dms_withholds_silently(upstream: str) -> None:
    bob = ns.Keys.generate()
    wrap = wrap_for(bob)

    async def scenario(sim: SimServer) -> None:
        reader = await raw(sim.url)
        challenge = await reader.recv()
        assert challenge[0] == "AUTH"  # offered on connect
        assert (await reader.publish(wrap))[2:] == [True, ""]
        frames = await reader.query(p_filter(bob))
        assert frames == [["EOSE", "q"]]  # no CLOSED, no NOTICE: just nothing
        ok = await reader.authenticate(bob, "stale", sim.url)
        assert ok[2] is False and ok[3].startswith("restricted: authentication error: ")
        assert (await reader.authenticate(bob, challenge[1], sim.url))[2:] == [True, ""]
        assert [e["id"] for e in events_in(await reader.query(p_filter(bob), sub="b"))] == [
            wrap.id().to_hex()
        ]

        # Raw nostr-sdk clients: without an authenticator nothing, ever.
        plain = await sdk_client(sim.url)
        assert await fetch_ids(plain, inbox_filter(bob)) == set()
        authed = await sdk_client(sim.url, bob)
        for _ in range(20):  # the AUTH on connect races the first REQ
            if await fetch_ids(authed, inbox_filter(bob), timeout=0.5):
                break
        assert await fetch_ids(authed, inbox_filter(bob)) == {wrap.id().to_hex()}
        for client in (plain, authed):
            await client.shutdown()

    run_sim(upstream, scenario, nip42_dms=True)


def test_auth_all_refuses_reads_and_writes_until_authenticated(upstream: str) -> None:
    bob = ns.Keys.generate()
    wrap = wrap_for(bob)

    async def scenario(sim: SimServer) -> None:
        reader = await raw(sim.url)
        ok = await reader.publish(wrap)
        assert ok[2:] == [False, "auth-required: all requests must be authenticated"]
        frames = await reader.query({"kinds": [30078]})
        assert frames[-1] == ["CLOSED", "q", "auth-required: all requests must be authenticated"]
        challenge = next(f[1] for f in frames if f[0] == "AUTH")
        ok = await reader.authenticate(bob, "nope", sim.url)
        assert ok[2:] == [False, "error: failed to authenticate"]

        plain = await sdk_client(sim.url)
        output = await plain.send_event(wrap)
        assert not output.success and "auth-required:" in next(iter(output.failed.values()))
        # nostr-sdk with an authenticator answers the challenge and retries by itself.
        authed = await sdk_client(sim.url, bob)
        output = await authed.send_event(wrap)
        assert [str(u) for u in output.success] == [sim.url]
        assert await fetch_ids(authed, inbox_filter(bob)) == {wrap.id().to_hex()}
        assert await fetch_ids(plain, inbox_filter(bob)) == set()
        assert (await reader.authenticate(bob, challenge, sim.url))[2] is True
        for client in (plain, authed):
            await client.shutdown()

    run_sim(upstream, scenario, auth_all=True)


# -- rate limits ----------------------------------------------------------------------


def test_rate_limit_per_connection_and_per_ip(upstream: str) -> None:
    keys = ns.Keys.generate()
    notes = [build(keys, 1, f"note {i}") for i in range(8)]

    async def per_connection(sim: SimServer) -> None:
        first, second = await raw(sim.url), await raw(sim.url)
        answers = [(await first.publish(n))[2:] for n in notes[:4]]
        assert answers[:3] == [[True, ""]] * 3
        assert answers[3] == [False, "rate-limited: you are noting too much"]
        assert (await second.publish(notes[4]))[2] is True  # its own budget
        await asyncio.sleep(0.6)  # refill: 3 per second
        assert (await first.publish(notes[5]))[2] is True

    run_sim(upstream, per_connection, rate_limit=3, rate_window=1)

    async def per_ip(sim: SimServer) -> None:
        first, second = await raw(sim.url), await raw(sim.url)
        assert (await first.publish(notes[6]))[2] is True
        refused = await second.publish(notes[7])  # one shared budget for 127.0.0.1
        assert refused[2:] == [False, "rate-limited: you are noting too much"]
        assert sim.stats["refused:rate-limited"] == 1

    run_sim(upstream, per_ip, rate_limit_ip=1, rate_window=60)


# -- queries --------------------------------------------------------------------------


def test_max_filter_limit_caps_every_filter(upstream: str) -> None:
    keys = ns.Keys.generate()
    notes = [build(keys, 1, f"n{i}", created_at=int(time.time()) - i) for i in range(8)]

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        for note in notes:
            await client.publish(note)
        mine = {"kinds": [1], "authors": [keys.public_key().to_hex()]}
        assert len(events_in(await client.query(mine))) == 5
        assert len(events_in(await client.query({**mine, "limit": 3}, sub="b"))) == 3
        assert len(events_in(await client.query({**mine, "limit": 100}, sub="c"))) == 5

    run_sim(upstream, scenario, max_filter_limit=5)


def test_limit_scrapers_answers_eose_only(upstream: str) -> None:
    keys = ns.Keys.generate()
    inbox_list = build(keys, 10050, "", [["relay", "wss://inbox.example"]])

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        await client.publish(inbox_list)
        author = keys.public_key().to_hex()
        assert await client.query({"kinds": [10050]}) == [["EOSE", "q"]]
        # One imprecise filter makes the whole REQ a scraper.
        mixed = await client.query({"kinds": [10050], "authors": [author]}, {"kinds": [10050]})
        assert mixed == [["EOSE", "q"]]
        precise = await client.query({"kinds": [10050], "authors": [author]}, sub="p")
        assert [e["id"] for e in events_in(precise)] == [inbox_list.id().to_hex()]
        tagged = await client.query({"kinds": [30078], "#d": ["x"]}, sub="t")
        assert tagged[-1] == ["EOSE", "t"]
        assert sim.stats["scraper_reqs"] == 2

    run_sim(upstream, scenario, limit_scrapers=True)


def test_max_subscriptions(upstream: str) -> None:
    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        for sub in ("a", "b"):
            assert (await client.query({"kinds": [1], "limit": 1}, sub=sub))[-1][0] == "EOSE"
        await client.send("REQ", "c", {"kinds": [1], "limit": 1})
        assert await client.recv() == ["NOTICE", "ERROR: too many concurrent REQs"]
        await client.send("CLOSE", "a")
        assert (await client.query({"kinds": [1], "limit": 1}, sub="c"))[-1] == ["EOSE", "c"]

    run_sim(upstream, scenario, max_subscriptions=2)


# -- what an event must look like -----------------------------------------------------


def test_created_at_limits(upstream: str) -> None:
    keys = ns.Keys.generate()
    now = int(time.time())

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        old = await client.publish(build(keys, 1, "old", created_at=now - 7200))
        assert old[2:] == [False, "invalid: created_at too early"]
        future = await client.publish(build(keys, 1, "future", created_at=now + 600))
        assert future[2:] == [False, "invalid: created_at too late"]
        assert (await client.publish(build(keys, 1, "recent", created_at=now - 60)))[2] is True

    run_sim(upstream, scenario, created_at_lower_limit=3600, created_at_upper_limit=300)


def test_min_pow(upstream: str) -> None:
    keys = ns.Keys.generate()

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        plain = build(keys, 1, "no work")
        if pow_bits(plain.id().to_hex()) < 8:
            assert (await client.publish(plain))[2:] == [False, "pow: required a difficulty >= 8"]
        mined = (
            ns.EventBuilder(ns.Kind(1), "worked")
            .finalize_unsigned(keys.public_key())
            .mine(ns.SingleThreadPow(), 8)
            .sign(keys)
        )
        assert pow_bits(mined.id().to_hex()) >= 8
        assert (await client.publish(mined))[2] is True

    run_sim(upstream, scenario, min_pow=8)


def test_max_message_length_and_event_size(upstream: str) -> None:
    keys = ns.Keys.generate()
    big = build(keys, 1, "x" * 5000)

    async def message_cap(sim: SimServer) -> None:
        client = await raw(sim.url)
        await client.send("EVENT", json.loads(big.as_json()))
        size = len(json.dumps(["EVENT", json.loads(big.as_json())]).encode())
        assert await client.recv() == ["NOTICE", f"message too large ({size} > 4000)"]
        assert (await client.publish(build(keys, 1, "small")))[2] is True  # still connected

    run_sim(upstream, message_cap, max_message_length=4000)

    async def event_cap(sim: SimServer) -> None:
        client = await raw(sim.url)
        ok = await client.publish(big)
        assert ok[2] is False and ok[3].startswith("invalid: event too large: ")

    run_sim(upstream, event_cap, max_event_bytes=4000)


def test_blocked_kinds(upstream: str) -> None:
    keys = ns.Keys.generate()

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        ok = await client.publish(build(keys, 30078, "presence", [["d", "p2p"]]))
        assert ok[2:] == [False, "blocked: note kind is not allowed here"]
        assert (await client.publish(build(keys, 1, "fine")))[2] is True

    run_sim(upstream, scenario, blocked_kinds="30078")


def test_shadow_drop_says_ok_and_stores_nothing(upstream: str) -> None:
    bob = ns.Keys.generate()
    wrap = wrap_for(bob)

    async def scenario(sim: SimServer) -> None:
        client = await raw(sim.url)
        assert (await client.publish(wrap))[2:] == [True, ""]
        assert events_in(await client.query(p_filter(bob))) == []
        assert sim.stats["shadow_dropped"] == 1

    run_sim(upstream, scenario, shadow_drop=1.0)


def test_ignore_expiration_keeps_serving_expired_events(upstream: str) -> None:
    keys = ns.Keys.generate()
    now = int(time.time())
    expired = build(keys, 1, "gone", [["expiration", str(now - 10)]], created_at=now - 60)
    mine = {"kinds": [1], "authors": [keys.public_key().to_hex()]}

    async def honoured(sim: SimServer) -> None:
        ok = await (await raw(sim.url)).publish(expired)
        assert ok[2] is False and "expired" in ok[3]

    run_sim(upstream, honoured)

    async def ignored(sim: SimServer) -> None:
        client = await raw(sim.url)
        assert (await client.publish(expired))[2] is True
        assert [e["id"] for e in events_in(await client.query(mine))] == [expired.id().to_hex()]

    run_sim(upstream, ignored, ignore_expiration=True)


# -- the document and the process -----------------------------------------------------


def test_nip11_and_subprocess(upstream: str) -> None:
    policies = Policies.parse(
        ["auth_all", "max_message_length=16384", "min_pow=20", "max_filter_limit", "rate_limit=8"]
    )
    with RelaySim(upstream, policies) as sim:
        limitation = sim.nip11()["limitation"]
        assert limitation == {
            "auth_required": True,
            "restricted_writes": True,
            "max_message_length": 16384,
            "max_limit": 500,
            "min_pow_difficulty": 20,
        }
        assert 42 in sim.nip11()["supported_nips"]

        async def probe() -> None:
            client = await raw(sim.url)
            await client.query({"kinds": [1]})
            await client.ws.close()

        asyncio.run(probe())
        assert sim.stats()["closed:auth-required"] == 1
    assert sim.proc is not None and sim.proc.returncode == 0
