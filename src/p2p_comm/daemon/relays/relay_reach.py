"""Why a relay cannot be reached: connection refused, DNS, TLS, an HTTP status instead of a
websocket upgrade, or no answer, in words a user can act on.

The daemon's own connections only say "relay not connected" (nostr-sdk 0.45 keeps the cause
of a failed attempt to itself); a throwaway connection attempt (`Client.try_connect`) reports
it, so a relay that is down is tried that way now and then (`diagnose`)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import nostr_sdk as ns

log = logging.getLogger("p2p.relays")

DIAGNOSE_TIMEOUT = 5.0

_HTTP = re.compile(r"HTTP error:\s*(\d{3})\s*(.*)", re.IGNORECASE)
_DNS = re.compile(
    r"lookup address|name or service not known|nodename nor servname|no address associated"
    r"|temporary failure in name resolution|name resolution|dns",
    re.IGNORECASE,
)
_TLS = re.compile(
    r"tls|ssl|certificate|handshake|corrupt message|invalidcontenttype|alert|webpki|rustls",
    re.IGNORECASE,
)


def explain(url: str, raw: str) -> str:
    """One phrase for why connecting to ``url`` failed, from the SDK's raw ``raw``."""
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port}" if parts.port else host
    text = raw.strip() or "no reason given"
    lowered = text.lower()
    if "connection refused" in lowered:
        return f"connection refused: nothing accepts connections at {where}"
    if _DNS.search(text):
        return f"DNS lookup of {host} failed ({text})"
    match = _HTTP.search(text)
    if match:
        status = f"{match.group(1)} {match.group(2)}".strip()
        return f"the server answered HTTP {status} instead of opening a websocket"
    if parts.scheme == "wss" and _TLS.search(text):
        return f"TLS handshake with {where} failed ({text})"
    if "timeout" in lowered or "timed out" in lowered:
        return f"no answer from {where} (connection timed out)"
    if "reset" in lowered or "unreachable" in lowered:
        return f"cannot connect to {where} ({text})"
    return f"cannot connect ({text})"


async def diagnose(url: str, timeout: float = DIAGNOSE_TIMEOUT) -> str:
    """Try a fresh connection to ``url``: "" if it connects, else why not (see `explain`)."""
    client = ns.Client()
    try:
        await client.add_relay(ns.RelayUrl.parse(url))
        output = await client.try_connect(timedelta(seconds=timeout))
        if output.success:
            return ""
        reasons = list(output.failed.values())
        return explain(url, reasons[0] if reasons else "no answer")
    except Exception as exc:  # a URL the SDK cannot even parse, and the like
        return explain(url, str(exc))
    finally:
        try:
            await client.shutdown()
        except Exception as exc:
            log.debug("closing the diagnosis client for %s: %s", url, exc)
