"""NIP-11 relay information: the limits a relay announces, read defensively.

Relays serve this document over HTTP at their websocket URL when asked with
``Accept: application/nostr+json``. What real relays send varies: strfry announces
message length, subscriptions and query limit; nostr-rs-relay only ``payment_required`` and
``restricted_writes``; a khatru relay often no ``limitation`` at all. Anything missing,
of the wrong type or absurd is left unknown (``None``) rather than trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_DOCUMENT_BYTES = 256 * 1024
"""We read at most this much of a document (real ones are well under 4 KiB)."""

MAX_HEADER_BYTES = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)

_YEAR = 365 * 24 * 3600

# Plausible range of each integer limit; a value outside it is a relay's bug or junk, and
# acting on it (a 10-byte message cap, a 2**60 query limit) would do harm.
_INT_RANGES: dict[str, tuple[int, int]] = {
    # Below 1 KiB no gift wrap fits; such a value is a misconfiguration, not a limit.
    "max_message_length": (1024, 1 << 30),
    "max_subscriptions": (1, 1_000_000),
    "max_limit": (1, 100_000_000),
    "max_event_tags": (1, 1_000_000),
    "min_pow_difficulty": (0, 256),
    # NIP-11 gives both as seconds relative to now (its example: 31536000 and 3).
    "created_at_lower_limit": (0, 100 * _YEAR),
    "created_at_upper_limit": (0, 100 * _YEAR),
}
_BOOLS = ("auth_required", "payment_required", "restricted_writes")


@dataclass(frozen=True)
class RelayLimits:
    """The ``limitation`` fields of a relay's NIP-11 document we act on; ``None`` = unknown."""

    max_message_length: int | None = None
    """Largest websocket message (so largest event JSON plus framing) the relay takes."""
    max_subscriptions: int | None = None
    max_limit: int | None = None
    """Most events one filter returns: page past it with ``until``."""
    max_event_tags: int | None = None
    auth_required: bool | None = None
    """NIP-42 AUTH before anything else (other relays may still ask for specific actions)."""
    payment_required: bool | None = None
    restricted_writes: bool | None = None
    min_pow_difficulty: int | None = None
    created_at_lower_limit: int | None = None
    """Oldest accepted ``created_at``, in seconds before now."""
    created_at_upper_limit: int | None = None
    """Newest accepted ``created_at``, in seconds after now."""


def parse(document: object) -> RelayLimits:
    """The limits in a decoded NIP-11 document; junk anywhere just leaves fields unknown."""
    if not isinstance(document, dict):
        return RelayLimits()
    limitation = document.get("limitation")
    if not isinstance(limitation, dict):
        return RelayLimits()
    values: dict[str, Any] = {}
    for name, (low, high) in _INT_RANGES.items():
        number = _integer(limitation.get(name))
        if number is not None and low <= number <= high:
            values[name] = number
    for name in _BOOLS:
        flag = limitation.get(name)
        if isinstance(flag, bool):
            values[name] = flag
    return RelayLimits(**values)


def http_url(relay_url: str) -> str:
    """Where a relay serves its NIP-11 document: ``ws(s)://`` becomes ``http(s)://``."""
    if relay_url.startswith("wss://"):
        return "https://" + relay_url[len("wss://") :]
    if relay_url.startswith("ws://"):
        return "http://" + relay_url[len("ws://") :]
    return relay_url


def fetch(url: str, timeout: float = 5.0) -> RelayLimits | None:
    """`fetch_async`, blocking (for callers without an event loop)."""
    return asyncio.run(fetch_async(url, timeout))


async def fetch_async(url: str, timeout: float = 5.0) -> RelayLimits | None:
    """GET the relay's NIP-11 document; ``None`` if there is no readable one.

    A document that is JSON but says nothing useful gives an all-unknown ``RelayLimits``.
    ``timeout`` bounds the whole exchange, redirects included. One GET over a connection
    of our own, on the event loop: urllib.request and http.client (with the email
    package) would add 1.8 MiB to every daemon, which asks this once per relay, and a
    thread to run them in 0.25 MiB more.
    """
    try:
        return await asyncio.wait_for(_fetch(url), timeout)
    except TimeoutError:
        return None


async def _fetch(url: str) -> RelayLimits | None:
    target = http_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        if not target.startswith(("http://", "https://")):
            return None  # nor file:// or anything else a redirect may name
        try:
            status, headers, body = await _get(target)
            if status in _REDIRECTS and "location" in headers:
                target = urljoin(target, headers["location"])
                continue
            if status != 200 or body is None:
                return None
            document = json.loads(body)
        # Unreachable, refused, TLS, broken HTTP, not UTF-8 JSON, nested too deep.
        except (OSError, ValueError, RecursionError):
            return None
        return parse(document)
    return None


async def _get(target: str) -> tuple[int, dict[str, str], bytes | None]:
    """Status, headers (lower-case names) and body of one GET; body None if over the cap."""
    parts = urlsplit(target)
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nAccept: application/nostr+json\r\n"
        "User-Agent: p2p-comm\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if tls else None
    )
    data = bytearray()
    try:
        writer.write(request)
        await writer.drain()
        while len(data) <= MAX_HEADER_BYTES + MAX_DOCUMENT_BYTES:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    head, found, body = bytes(data).partition(b"\r\n\r\n")
    if not found or len(head) > MAX_HEADER_BYTES:
        raise ValueError("no HTTP header")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_DOCUMENT_BYTES:
            return status, headers, None
        if len(body) < length:
            raise ValueError("body cut short")
        body = body[:length]
    return status, headers, None if len(body) > MAX_DOCUMENT_BYTES else body


def _unchunk(data: bytes) -> bytes:
    """The body of a chunked response (up to just past the size cap)."""
    out = bytearray()
    at = 0
    while len(out) <= MAX_DOCUMENT_BYTES:
        end = data.index(b"\r\n", at)  # ValueError: cut short
        size = int(data[at:end].split(b";")[0], 16)
        if size == 0:
            break
        piece = data[end + 2 : end + 2 + size]
        if len(piece) < size:
            raise ValueError("chunk cut short")
        out += piece
        at = end + 2 + size + 2
    return bytes(out)


def _integer(value: object) -> int | None:
    # JSON has one number type: accept 65536.0 as 65536, refuse true/false (ints in Python).
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
