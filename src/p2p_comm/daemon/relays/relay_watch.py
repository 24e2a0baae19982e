"""Relay liveness and reachability: the watchdog that finds half-open connections, and
`p2p doctor` (a self-addressed round trip through each relay, and a verdict for each)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import nostr_sdk as ns

from ... import clock
from ...identity import Identity
from ...nostr import nip17
from .relay_reach import diagnose
from .relay_status import relay_states

if TYPE_CHECKING:
    from .nostr_io import RelayPool

log = logging.getLogger("p2p.relays")

WATCH_INTERVAL = 10.0  # seconds between liveness probes of each connected relay
PROBE_TIMEOUT = 5.0
RECONNECT_GAP = 2.0  # seconds between dropping a connection and opening a new one
REACH_FIRST, REACH_INTERVAL = 1.0, 10.0  # seconds: why a relay that is down is down


async def watch(pool: RelayPool) -> None:
    """Probe every connected relay now and then: a connection that went half-open (no
    FIN, no RST) otherwise looks "connected" for a minute or more. A relay that does not
    answer is reconnected; a relay that comes back triggers `on_reconnect` (catch-up)."""
    was_connected: dict[str, bool] = {}
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        for client in (pool.reader, pool.writer):
            try:
                relays = await client.relays()
            except Exception:
                continue
            for url, relay in relays.items():
                status = relay.status()
                up = status == ns.RelayStatus.CONNECTED
                if status in _WAITING:
                    # The SDK's own retry backs off for a minute or more after a long
                    # outage; one attempt per watch keeps the return prompt.
                    _try_now(relay)
                if up and not await _answers(relay):
                    log.warning("relay %s does not answer; reconnecting", url)
                    pool.health.of(str(url)).last_error = "no answer (connection half-open?)"
                    up = await _reconnect(pool, relay, reader=client is pool.reader)
                if client is pool.reader:
                    pool.note_up(str(url), up)
                    if up and was_connected.get(str(url)) is False:
                        # Our REQs again (one that failed while it was away is not sent
                        # by the SDK's reconnection), then a catch-up.
                        pool.resubscribe_soon(str(url))
                    was_connected[str(url)] = up


async def reach(pool: RelayPool) -> None:
    """Now and then, for each relay we cannot read from, a fresh connection attempt that
    says why (refused, DNS, TLS, an HTTP status): for `status`, `doctor` and the log, where
    the daemon's own connection only knows "relay not connected"."""
    await asyncio.sleep(REACH_FIRST)
    while True:
        try:
            relays = await pool.reader.relays()
            down = [str(u) for u, r in relays.items() if r.status() != ns.RelayStatus.CONNECTED]
        except Exception as exc:
            log.debug("listing relays failed: %s", exc)
            down = []
        for url in pool.all:
            if url not in down:
                pool.health.of(url).connect_error = ""
        await asyncio.gather(*(note_reach(pool, url) for url in down))
        await asyncio.sleep(REACH_INTERVAL)


async def note_reach(pool: RelayPool, url: str) -> str:
    """Find out why ``url`` cannot be reached now; remember it, and log it when it changes."""
    why = await diagnose(url, PROBE_TIMEOUT)
    health = pool.health.of(url)
    if why and why != health.connect_error:
        log.warning("relay %s cannot be reached: %s", url, why)
    elif not why and health.connect_error:
        log.info("relay %s can be reached again", url)
    health.connect_error = why
    return why


_WAITING = (ns.RelayStatus.DISCONNECTED, ns.RelayStatus.SLEEPING, ns.RelayStatus.TERMINATED)
_ATTEMPTS: set[asyncio.Task[None]] = set()


def _try_now(relay: Any) -> None:
    async def attempt() -> None:
        try:
            await relay.try_connect(timeout=timedelta(seconds=PROBE_TIMEOUT))
        except Exception as exc:  # still away: the next watch tries again
            log.debug("reconnecting %s: %s", relay.url(), exc)

    task = asyncio.ensure_future(attempt())
    _ATTEMPTS.add(task)
    task.add_done_callback(_ATTEMPTS.discard)


async def _answers(relay: Any) -> bool:
    probe = ns.Filter().kind(ns.Kind(10050)).limit(1)
    started = time.monotonic()
    try:
        await relay.fetch_events(probe, timeout=timedelta(seconds=PROBE_TIMEOUT))
    except Exception:
        return False
    return time.monotonic() - started < PROBE_TIMEOUT


async def _reconnect(pool: RelayPool, relay: Any, reader: bool) -> bool:
    """Drop the connection and open a new one; on the reading client, then send our REQs
    there again (and catch up). Returns whether it is connected again."""
    url = str(relay.url())
    try:
        relay.disconnect()  # not awaitable in this SDK
        # Connected again within about a second of `disconnect()`, a relay of nostr-sdk
        # 0.45 looks connected but never delivers to the client again (measured).
        await asyncio.sleep(RECONNECT_GAP)
        relay.connect()
    except Exception as exc:
        log.warning("reconnecting %s failed: %s", url, exc)
        return False
    deadline = time.monotonic() + PROBE_TIMEOUT
    while relay.status() != ns.RelayStatus.CONNECTED and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if relay.status() != ns.RelayStatus.CONNECTED:
        return False  # the watch sends our REQs when it sees the relay back
    if reader:
        pool.resubscribe_soon(url)
    return True


async def probe(
    pool: RelayPool, url: str, wrap: Any, me: str, timeout: float = 4.0
) -> dict[str, Any]:
    """A self-addressed round trip through one relay: does it take our gift wrap, and
    does it give it back to us (a relay may accept DMs and then withhold them)?"""
    health = pool.health.of(url)
    started = time.monotonic()
    result = await pool.publish(wrap, relays=(url,), timeout=timeout)
    if url not in result.accepted:
        reason = health.connect_error or result.failed.get(url, "no answer")
        return {"url": url, "send": f"no ({reason})", "receive": "not tested", "ok": False}
    back: list[Any] = []
    query = ns.Filter().kind(ns.Kind(1059)).id(wrap.id()).pubkey(ns.PublicKey.parse(me))
    deadline = started + timeout * 2
    while not back and time.monotonic() < deadline:
        try:
            relay = await pool.reader.relay(ns.RelayUrl.parse(url))
            found = await relay.fetch_events(query, timeout=timedelta(seconds=1))
            back = list(found)
        except Exception as exc:
            log.info("doctor: fetching our probe from %s failed: %s", url, exc)
            await asyncio.sleep(0.3)
    health.withholds_dms = not back
    elapsed = round((time.monotonic() - started) * 1000)
    receive = f"yes ({elapsed} ms round trip)" if back else "no (withholds DMs)"
    return {"url": url, "send": "yes", "receive": receive, "ok": bool(back)}


async def doctor(pool: RelayPool, identity: Identity, relays: tuple[str, ...]) -> dict[str, Any]:
    """`p2p doctor`: probe each relay with a wrap to ourselves; one verdict per relay."""
    me = identity.public_hex
    text = f"p2p doctor probe {time.time():.3f}"

    async def one(url: str) -> dict[str, Any]:
        if not await pool.is_connected(url):
            await note_reach(pool, url)
        pow_bits = pool.health.pow_for((url,))
        wrap = await asyncio.to_thread(
            nip17.private_message, identity.keys, me, text, clock.now(), pow_bits
        )
        try:
            result = await probe(pool, url, wrap, me)
            result["files"] = await _file_size_probe(pool, identity, url, result, pow_bits)
        except Exception as exc:
            result = {"url": url, "send": f"no ({exc})", "receive": "not tested", "ok": False}
            result["files"] = "not tested"
        states = {s["url"]: s for s in await relay_states(pool)}
        state = states.get(url, {})
        result["roles"] = pool.roles(url)
        result["announce"] = state.get("announce", "unknown")
        result["problems"] = state.get("problems", [])
        result["verdict"] = _verdict(result)
        return result

    found = await asyncio.gather(*(one(url) for url in relays))
    usable = sum(1 for r in found if r["ok"])
    report: dict[str, Any] = {"relays": list(found), "usable": usable, "total": len(found)}
    if not usable:
        why = "; ".join(f"{r['url']}: {r['verdict']}" for r in found) or "none is configured"
        report["ok"] = False
        report["error"] = {
            "code": "no_relay",
            "message": f"no relay is usable for calls ({why}); fix or replace the relays "
            "in the config (P2P_RELAYS or relays in p2p-config.toml).",
        }
    return report


async def _file_size_probe(
    pool: RelayPool, identity: Identity, url: str, small: dict[str, Any], pow_bits: int
) -> str:
    """Does ``url`` take a wrap as large as a file chunk? Some relays take small events
    and swallow large ones (nostr-relay's defaults): a small probe alone says "works"."""
    if not small["send"].startswith("yes"):
        return "not tested"
    if pow_bits:
        return "not tested (proof of work for a file-size wrap takes minutes)"
    from .wrap_sizes import file_chunk_content  # wraps for real: loaded when first needed

    me = identity.public_hex
    text = file_chunk_content()
    wrap = await asyncio.to_thread(nip17.private_message, identity.keys, me, text, clock.now())
    size = len(wrap.as_json()) + 64
    result = await pool.publish(wrap, relays=(url,))
    if url in result.accepted:
        return f"yes ({size} bytes)"
    return f"no ({size} bytes: {result.failed.get(url, 'no answer')})"


def _inner(answer: str) -> str:
    """The reason inside "no (reason)", whole."""
    if answer.startswith("no (") and answer.endswith(")"):
        return answer[4:-1]
    return answer


def _verdict(probe: dict[str, Any]) -> str:
    """One sentence per relay for `p2p doctor`, judged on what we use the relay for."""
    inbox, announce = "inbox" in probe["roles"], "announce" in probe["roles"]
    problems = f" ({'; '.join(probe['problems'])})" if probe["problems"] else ""
    if inbox and not probe["send"].startswith("yes"):
        return f"unusable for calls: it does not take our messages ({_inner(probe['send'])})"
    if inbox and not probe["receive"].startswith("yes"):
        return "unusable for receiving: it accepts our messages but never hands them back"
    if inbox and probe.get("files", "").startswith("no"):
        return (
            "calls work, but it does not take a file-size message"
            f" ({_inner(probe['files'])}): files and long texts go in small pieces{problems}"
        )
    if announce and not probe["announce"].startswith("yes"):
        if not inbox:
            return f"others cannot discover us here: announce {probe['announce']}"
        return f"calls work, but others cannot discover us here: announce {probe['announce']}"
    if not inbox:
        dms = "it also carries DMs" if probe["ok"] else "it does not carry DMs back to us"
        return f"works for announcing (not an inbox relay of ours; {dms}){problems}"
    if not announce:
        return f"works as an inbox relay: takes and hands back our messages{problems}"
    return f"works: sends, receives and announces{problems}"
