"""Reading the file that `sendfile --path` names: regular files only, bounded, never the
home's own files, and off the event loop.

The daemon reads the path (the CLI is a byte pipe), so whatever the path is, the daemon's
event loop must not wait on it: a FIFO with no writer would freeze every command, a device
like /dev/zero would grow the daemon without end, and the identity file is a file like any
other to `open`. What a path leads to is judged on the file it opens (its device and inode),
not on how the path is spelled: symlinks, `..`, a second link to the same inode all end at
the same file.
"""

from __future__ import annotations

import asyncio
import os
import stat

from ...paths import HomePaths
from ..base.errors import CommandError

_READ_BLOCK = 1 << 20


async def read_for_sending(path: str, limit: int, paths: HomePaths) -> bytes:
    """The content of the regular file at ``path``, read in a worker thread: at most
    ``limit`` bytes, or a `CommandError` (one sentence) saying why not."""
    return await asyncio.to_thread(read_regular_file, path, limit, paths)


def read_regular_file(path: str, limit: int, paths: HomePaths) -> bytes:
    """Blocking: see `read_for_sending`. Never reads more than ``limit + 1`` bytes."""
    try:
        # A first look without opening: opening a device can have effects of its own.
        _check(path, os.stat(path), paths, limit)
        # O_NONBLOCK: if the path became a FIFO since, opening it must not wait for a
        # writer; the check on the open file below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise CommandError("bad_request", f"cannot read {path}: {exc.strerror}.") from None
    try:
        # The file we actually hold is the one judged: the path may have changed meanwhile.
        _check(path, os.fstat(fd), paths, limit, fd)
        os.set_blocking(fd, True)
        blocks: list[bytes] = []
        total = 0
        # The size can lie (a file that grows, /proc files that say 0): read one byte past
        # the limit at most, which is enough to know it is over.
        while total <= limit:
            block = os.read(fd, min(_READ_BLOCK, limit + 1 - total))
            if not block:
                break
            blocks.append(block)
            total += len(block)
    except OSError as exc:
        raise CommandError("bad_request", f"cannot read {path}: {exc.strerror}.") from None
    finally:
        os.close(fd)
    if total > limit:
        raise CommandError("too_large", f"{path} is over the limit of {limit} bytes.")
    return b"".join(blocks)


def _check(path: str, info: os.stat_result, paths: HomePaths, limit: int, fd: int = -1) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise CommandError(
            "bad_request",
            f"{path} is not a regular file (sendfile --path reads regular files only).",
        )
    _refuse_home_files(path, info, paths, fd)
    if info.st_size > limit:
        raise CommandError(
            "too_large", f"{path} is {info.st_size} bytes, over the limit of {limit}."
        )


def _secret_files(paths: HomePaths) -> list[tuple[str, str]]:
    database = os.fspath(paths.database)
    return [
        (os.fspath(paths.identity), "identity file"),
        (os.fspath(paths.config), "configuration file"),
        (database, "state database"),
        *((database + suffix, "state database") for suffix in ("-wal", "-shm", "-journal")),
        (os.fspath(paths.lock), "daemon lock file"),
        (os.fspath(paths.log), "daemon log"),
        (os.fspath(paths.socket), "control socket"),
    ]


def _refuse_home_files(path: str, info: os.stat_result, paths: HomePaths, fd: int) -> None:
    """Refuse the home's own files: the named ones by inode (so a symlink or a hard link
    elsewhere leads to them in vain), and anything else that sits directly in the home
    (a backed-up `p2p-identity.old.json`, a runtime's own secrets in ~/.openclaw). Received
    files and transcripts, in the home's subfolders, may still be sent on."""
    for secret, label in _secret_files(paths):
        try:
            known = os.stat(secret)
        except OSError:
            continue
        if (known.st_dev, known.st_ino) == (info.st_dev, info.st_ino):
            raise CommandError(
                "not_allowed",
                f"{path} is this agent's {label}, which is never sent.",
            )
    real = _real_path(path, fd)
    try:
        in_home = os.path.samefile(os.path.dirname(real), paths.home)
    except OSError:
        in_home = False
    if in_home:
        raise CommandError(
            "not_allowed",
            f"{path} is one of this agent's own files in {paths.home}, which are never sent.",
        )


def _real_path(path: str, fd: int) -> str:
    """Where the open file really is (Linux tells it exactly); else where the path leads."""
    if fd >= 0:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(path)
