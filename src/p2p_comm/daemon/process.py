"""The daemon process around the parts: the home's lock, logging, owner-only files, and
opening the identity and the database (refusing state that belongs to a lost key)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from ..config import Config
from ..identity import Identity, load_or_create
from ..paths import HomePaths
from ..store import Store

log = logging.getLogger("p2p.daemon")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas: the SDK's threads then share one instead of
    each keeping its own (0.25 MiB less private memory idle, more after traffic). Call it
    before any thread starts; elsewhere than glibc it does nothing."""
    import ctypes  # loaded already by nostr-sdk's bindings

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-8, arenas)  # -8: M_ARENA_MAX (malloc.h)


def tighten(paths: HomePaths) -> None:
    """Make what earlier versions (or another umask) left under the home owner-only:
    files 0600, our directories 0700. The home itself is the user's and keeps its mode."""
    singles = [paths.database, paths.log, paths.escalations, paths.lock, paths.identity]
    singles += [paths.home / f"{paths.database.name}{suffix}" for suffix in ("-wal", "-shm")]
    singles += [paths.home / f"{paths.log.name}.{number}" for number in range(1, 10)]
    for path in singles:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)
    for folder in (paths.transcripts, paths.files, paths.home / "skills" / "p2p-comm"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        os.chmod(folder, 0o700)
        for root, dirs, names in os.walk(folder):
            for name in dirs:
                folder_path = os.path.join(root, name)
                if not os.path.islink(folder_path):  # chmod would follow it
                    os.chmod(folder_path, 0o700)
            for name in names:
                file = os.path.join(root, name)
                if not os.path.islink(file):
                    os.chmod(file, 0o600)


class StartupError(Exception):
    """The daemon cannot start; the message is for the user."""


class AlreadyRunning(StartupError):
    """Another daemon holds this home's lock."""


def acquire_lock(paths: HomePaths) -> int:
    """Take the home's exclusive lock (released by the kernel even on SIGKILL)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(f"a daemon is already running for this home (pid {holder}).") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class RotatingLog(logging.FileHandler):
    """logging.handlers.RotatingFileHandler's rotation (log, log.1 .. log.N), without
    importing logging.handlers: it pulls in pickle and queue, 0.4 MiB of every daemon."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.max_bytes = max_bytes
        self.backups = backups

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None:
                self.stream = self._open()
            line = self.format(record) + "\n"
            self.stream.seek(0, 2)
            if self.backups and self.stream.tell() + len(line) >= self.max_bytes:
                self._rotate()
        except Exception:
            self.handleError(record)
            return
        super().emit(record)

    def _rotate(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None
        for number in range(self.backups - 1, 0, -1):
            older = f"{self.baseFilename}.{number}"
            if os.path.exists(older):
                os.replace(older, f"{self.baseFilename}.{number + 1}")
        os.replace(self.baseFilename, f"{self.baseFilename}.1")
        self.stream = self._open()


def setup_logging(paths: HomePaths, level: str) -> None:
    handler = RotatingLog(paths.log, max_bytes=2 * 1024 * 1024, backups=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    os.chmod(paths.log, 0o600)


def max_request(config: Config) -> int:
    """The largest request line: a file at the size limit as base64, plus room."""
    return config.max_file_bytes * 4 // 3 + 1024 * 1024


def open_state(paths: HomePaths) -> tuple[Identity, Store]:
    """The identity and the database, refusing a home whose state belongs to a lost key."""
    had_identity = paths.identity.exists()
    store = Store(paths.database)
    try:
        if not had_identity and store.has_history():
            raise StartupError(
                f"the identity file {paths.identity} is missing, but this home holds calls, "
                "contacts or blocks of an earlier identity; restore that file, or move "
                f"{paths.database} away to start as a new agent."
            )
        identity, created = load_or_create(paths.identity)
        if created:
            log.info("created a new identity %s", identity.npub)
        owner_of_state = store.get("identity")
        if owner_of_state and owner_of_state != identity.public_hex:
            raise StartupError(
                f"{paths.database} belongs to another identity than {paths.identity}; "
                "restore the matching identity file, or move the database away."
            )
        if not owner_of_state:
            with store.transaction():
                store.put("identity", identity.public_hex)
    except BaseException:
        store.close()
        raise
    return identity, store
