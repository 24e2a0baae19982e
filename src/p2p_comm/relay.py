"""``p2p relay``: nostr-sdk's embedded relay in the foreground, for LANs, tests and the demo."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any

import nostr_sdk as ns

from .schema import document, error_document

# A private group of agents sends bursts (file chunks, receipts) that public-relay
# limits would throttle.
MAX_REQS_PER_CONNECTION = 2000
NOTES_PER_MINUTE = 600_000
MAX_FILTER_LIMIT = 50_000


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def build_relay(host: str, port: int, db: str | None) -> tuple[object, str]:
    """Build and start a LocalRelay; returns (relay, url)."""
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    builder = (
        ns.LocalRelayBuilder()
        .addr(host)
        .port(port or free_port(host))
        .rate_limit(
            ns.RateLimit(max_reqs=MAX_REQS_PER_CONNECTION, notes_per_minute=NOTES_PER_MINUTE)
        )
        # Discovery asks for every presence at once; a group may hold thousands of agents.
        .max_filter_limit(MAX_FILTER_LIMIT)
        .default_filter_limit(MAX_FILTER_LIMIT)
    )
    if db:
        builder = builder.database(await ns.NostrLmdb.open(db))
    relay = builder.build()
    await relay.run()
    return relay, str(await relay.url())


def _say(json_output: bool, text: str, **fields: Any) -> None:
    """One line on stdout: text, or with ``--json`` a schema document per line."""
    print(json.dumps(document(fields)) if json_output else text, flush=True)


async def serve(host: str, port: int, db: str | None, json_output: bool = False) -> int:
    relay, url = await build_relay(host, port, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = f"database {db}" if db else "in memory"
    _say(json_output, f"relay ready: {url} ({where})", relay="ready", url=url, db=db)
    await stop.wait()
    relay.shutdown()  # type: ignore[attr-defined]
    _say(json_output, "relay stopped", relay="stopped", url=url, db=db)
    return 0


def main(host: str, port: int, db: str | None, json_output: bool = False) -> int:
    """Serve until stopped; a relay that cannot start is one sentence on stderr and exit 1
    (with ``--json``: the error document on stdout)."""
    try:
        return asyncio.run(serve(host, port, db, json_output))
    except (OSError, ns.NostrSdkError) as exc:
        message = start_failure(host, port, exc)
        if json_output:
            print(json.dumps(error_document("relay_failed", message)), flush=True)
        else:
            print(f"error: {message}", file=sys.stderr)
        return 1


def start_failure(host: str, port: int, exc: BaseException) -> str:
    """Why the relay did not start, as one sentence for the user."""
    text = str(getattr(exc, "strerror", None) or exc)
    if "in use" in text:  # EADDRINUSE, from the OS or wrapped by nostr-sdk
        return f"port {port} on {host} is already in use; pick another --port (0 picks a free one)."
    if "invalid IP address" in text:
        return f"--host {host!r} is not an IP address this machine can listen on."
    return f"cannot start the relay on {host}:{port}: {text.strip(chr(39))}."
