"""The agent's Nostr key pair, kept in ``<home>/p2p-identity.json`` (mode 0600).

The secret key is read here and handed to the signer; it is never logged, printed
or put into an error message.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nostr_sdk

FILE_VERSION = 1


class IdentityError(Exception):
    """The identity file exists but cannot be used."""


@dataclass(frozen=True)
class Identity:
    """A loaded key pair with its public forms precomputed."""

    keys: nostr_sdk.Keys
    public_hex: str
    npub: str


def _from_keys(keys: nostr_sdk.Keys) -> Identity:
    public = keys.public_key()
    return Identity(keys=keys, public_hex=public.to_hex(), npub=public.to_bech32())


def _write_new(path: Path, keys: nostr_sdk.Keys) -> None:
    """Write atomically and never over an existing file: temp file, fsync, hard link."""
    identity = _from_keys(keys)
    document = {
        "version": FILE_VERSION,
        "secret_key": keys.secret_key().to_hex(),
        "public_key": identity.public_hex,
        "npub": identity.npub,
        "created_at": int(time.time()),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: Path) -> Identity:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise IdentityError(f"identity file {path} cannot be read ({reason}).") from None
    try:
        document = json.loads(text)
        secret = document["secret_key"]
        if not isinstance(secret, str):
            raise TypeError
        keys = nostr_sdk.Keys.parse(secret)
    except Exception:
        # Deliberately no detail: the parser's message could quote the secret.
        raise IdentityError(
            f"identity file {path} is corrupt; restore it from a backup or move it away "
            "to create a new identity (it is never replaced automatically)."
        ) from None
    identity = _from_keys(keys)
    stored_public = document.get("public_key")
    if stored_public is not None and stored_public != identity.public_hex:
        raise IdentityError(
            f"identity file {path} is inconsistent: its public key does not match its secret key."
        )
    return identity


def load_or_create(path: Path) -> tuple[Identity, bool]:
    """Load the identity at ``path``, creating it on first use. Returns (identity, created)."""
    if not path.exists():
        try:
            _write_new(path, nostr_sdk.Keys.generate())
            created = True
        except FileExistsError:
            created = False  # another process won the race; use its key
        return _read(path), created
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise IdentityError(
            f"identity file {path} is readable by other users (mode {mode:o}); "
            f"run 'chmod 600 {path}' first."
        )
    return _read(path), False
