"""Our signed prekeys (docs/PROTOCOL.md 3.12.2): what presence announces, what reads a
request encrypted to one, and when each is erased.

The key we announce is replaced once a day, never more often (a caller may have read it a
minute ago). A caller uses a prekey only from a presence that is still live, so a request
encrypted to one is sent before that presence expires and arrives at most two days later
(3.3's offline window): each private key is kept until two days and an hour after the
last presence that announced it expired, then erased (its row deleted; the database
overwrites deleted bytes, ``secure_delete``). After that, nothing in the home reads the
requests made to it. A daemon that was stopped longer than that erases such keys when it
starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...store import Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

log = logging.getLogger("p2p.prekeys")

ROTATE_AFTER = 86_400.0  # seconds a prekey is announced before it is replaced
KEEP_AFTER = 2 * 86_400.0 + 3_600.0  # seconds it is kept after its last announcement expired
_PREFIX = "prekey:"
MAKE_TIMEOUT = 30.0  # seconds a new key pair may take (about 0.04 s, measured)
# A new key pair is made in a short-lived interpreter (about 40 ms, once a day): the
# `cryptography` package costs every idle daemon 9 MiB of private memory once imported, and
# an agent nobody calls never needs it otherwise.
_MAKE = (
    "from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey as K; "
    "k = K.generate(); print(k.private_bytes_raw().hex(), k.public_key().public_bytes_raw().hex())"
)


@dataclass
class _Prekey:
    private: bytes
    made: float  # when it was made (by the daemon's clock)
    until: float  # when the last presence that announced it expires
    current: bool  # the one we announce now


class Prekeys:
    """Our prekeys, in the settings table (one row each); every call runs in the caller's
    transaction or makes its own."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _all(self) -> dict[str, _Prekey]:
        found: dict[str, _Prekey] = {}
        for key, value in self.store.prefixed(_PREFIX):
            try:
                data = json.loads(value)
                found[key[len(_PREFIX) :]] = _Prekey(
                    bytes.fromhex(data["private"]),
                    float(data["made"]),
                    float(data["until"]),
                    bool(data["current"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                log.error("prekey %s is unreadable (%s); erased", key[len(_PREFIX) :][:12], exc)
                self.store.delete(key)
        return found

    def _save(self, public: str, prekey: _Prekey) -> None:
        data = {
            "private": prekey.private.hex(),
            "made": prekey.made,
            "until": prekey.until,
            "current": prekey.current,
        }
        self.store.put(_PREFIX + public, json.dumps(data))

    def due(self, now: float) -> bool:
        """Whether a new prekey is wanted: none yet, or the current one is a day old."""
        current = next((k for k in self._all().values() if k.current), None)
        return current is None or now - current.made >= ROTATE_AFTER

    async def refresh(self, now: float) -> None:
        """Make a new current prekey if one is `due`; the one it replaces is kept (see
        `announce`). A failure is logged and the current one, if any, stays."""
        if not self.due(now):
            return
        try:
            private, public = await _make_pair()
        except (OSError, ValueError) as exc:
            log.warning("could not make a new prekey (%s); announcing the one we have", exc)
            return
        with self.store.transaction():
            for old_public, old in self._all().items():
                if old.current:
                    old.current = False
                    self._save(old_public, old)
            self._save(public, _Prekey(private, now, now, True))
        log.info("new prekey %s", public[:12])

    def announce(self, now: float, lifetime: float) -> str:
        """The prekey to announce in a presence made ``now`` that holds for ``lifetime``
        seconds ("" if none is made yet), noted as announced until then; erases the ones
        replaced whose keeping time is over."""
        with self.store.transaction():
            found = ""
            for public, key in self._all().items():
                if key.current:
                    key.until = max(key.until, now + lifetime)
                    self._save(public, key)
                    found = public
                elif now > key.until + KEEP_AFTER:
                    self.store.delete(_PREFIX + public)
                    self.store.erased()
                    log.info("erased prekey %s", public[:12])
            return found

    def private(self, public_hex: str) -> X25519PrivateKey | None:
        """Our private key for the prekey ``public_hex`` names, if we still hold it."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        value = self.store.get(_PREFIX + public_hex)
        if not value:
            return None
        try:
            return X25519PrivateKey.from_private_bytes(bytes.fromhex(json.loads(value)["private"]))
        except (KeyError, TypeError, ValueError):
            return None

    def held(self) -> list[str]:
        """The public keys of every prekey we hold, the current one included (for status
        and tests)."""
        return sorted(self._all())


async def _make_pair() -> tuple[bytes, str]:
    """A fresh X25519 key pair: (raw private key, public key hex)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MAKE,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # A child that hangs must not hold up our presence announcements for good.
        out, err = await asyncio.wait_for(child.communicate(), MAKE_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise OSError(f"no key pair within {MAKE_TIMEOUT:.0f} s") from None
    if child.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise OSError(lines[-1] if lines else f"exit {child.returncode}")
    private, public = out.decode().split()
    if len(private) != 64 or len(public) != 64:
        raise ValueError("not a key pair")
    return bytes.fromhex(private), public.lower()
