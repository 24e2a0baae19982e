"""The package against real relays on loopback: what relays take, serve and announce."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm.harness import RelayProcess
from p2p_comm.nostr import kinds, nip11, nip13, nip17, nip59
from p2p_comm.relay import free_port
from tests.conftest import NostrRelayProcess

TIMEOUT = timedelta(seconds=5)


async def _client(url: str) -> Any:
    client = ns.Client()
    await client.add_relay(ns.RelayUrl.parse(url))
    await client.connect(and_wait=TIMEOUT)
    return client


async def _wraps_since(url: str, receiver: str, since: int) -> set[str]:
    client = await _client(url)
    try:
        wanted = (
            ns.Filter()
            .kind(ns.Kind(kinds.GIFT_WRAP))
            .pubkey(ns.PublicKey.parse(receiver))
            .since(ns.Timestamp.from_secs(since))
        )
        found = await client.fetch_events(ns.ReqTarget.auto([wanted]), TIMEOUT)
        return {event.id().to_hex() for event in found}
    finally:
        await client.shutdown()


async def _round_trip(url: str) -> None:
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    sender, receiver = ns.Keys.generate(), ns.Keys.generate()
    you = receiver.public_key().to_hex()
    now = time.time()
    rumor = nip59.make_rumor(sender.public_key().to_hex(), kinds.CALL, '{"v":1}', int(now))
    call = nip59.wrap(sender, you, rumor, nip59.wrap_timestamp(now))
    retransmit = nip59.wrap(sender, you, rumor, nip59.wrap_timestamp(now))
    owner_message = nip17.private_message(sender, you, "escalation", now=now)
    client = await _client(url)
    try:
        for event in (call, retransmit, owner_message):
            output = await client.send_event(event)
            assert output.success, output.failed
    finally:
        await client.shutdown()
    # A receiver looking back only WRAP_JITTER seconds (not 2 days) gets all three,
    # the retransmit too: it is a new event, not a duplicate the relay would drop.
    sent = {event.id().to_hex() for event in (call, retransmit, owner_message)}
    assert await _wraps_since(url, you, int(now) - nip59.WRAP_JITTER) == sent
    assert nip59.unwrap(receiver, call).content == '{"v":1}'


# One process of each per module: the independent relay takes about a second to start.
@pytest.fixture(scope="module")
def embedded() -> Iterator[RelayProcess]:
    relay = RelayProcess().start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def independent() -> Iterator[NostrRelayProcess]:
    relay = NostrRelayProcess().start()
    yield relay
    relay.stop()


def test_wraps_reach_a_short_lookback_on_the_embedded_relay(embedded: RelayProcess) -> None:
    asyncio.run(_round_trip(embedded.url))


def test_wraps_reach_a_short_lookback_on_an_independent_relay(
    independent: NostrRelayProcess,
) -> None:
    asyncio.run(_round_trip(independent.url))


def test_nip11_of_real_relays(embedded: RelayProcess, independent: NostrRelayProcess) -> None:
    # nostr-sdk's LocalRelay serves no NIP-11 document; nostr-relay serves one without a
    # "limitation" object.
    assert nip11.fetch(embedded.url, timeout=3) is None
    assert nip11.fetch(independent.url, timeout=3) == nip11.RelayLimits()


async def _pow_relay() -> None:
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    relay = ns.LocalRelayBuilder().addr("127.0.0.1").port(free_port()).min_pow(12).build()
    await relay.run()
    keys = ns.Keys.generate()
    me = keys.public_key().to_hex()
    client = await _client(str(await relay.url()))
    try:
        plain = nip17.inbox_relay_list(me, ["wss://a.example"], int(time.time())).sign(keys)
        refused = await client.send_event(plain)
        assert not refused.success
        assert any("pow" in reason for reason in refused.failed.values()), refused.failed
        mined = nip13.mine(
            keys, nip17.inbox_relay_list(me, ["wss://a.example"], int(time.time())), 12
        )
        accepted = await client.send_event(mined)
        assert accepted.success, accepted.failed
    finally:
        await client.shutdown()
        relay.shutdown()


def test_a_relay_demanding_pow_takes_a_mined_inbox_list() -> None:
    asyncio.run(_pow_relay())
