"""Replacing a file whole, without writing through a symlink someone planted.

A fixed temporary name next to the target (`SKILL.md.tmp`) is a name another local user can
create first in a shared directory, as a symlink to a file of ours: opening it for writing
and chmod-ing it by path would then rewrite and re-mode that file. Here the temporary file
has a random name, is created new (`O_EXCL`, so an existing name, symlink or not, is never
opened) with `O_NOFOLLOW`, gets its mode on the descriptor, and is renamed over the target,
which replaces a symlink at the target instead of following it.
"""

from __future__ import annotations

import contextlib
import os
import secrets

_ATTEMPTS = 16


def replace_file(target: str, data: bytes, mode: int = 0o600) -> None:
    """Make ``target`` a new regular file holding ``data``, with ``mode``, atomically."""
    folder, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_ATTEMPTS):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, mode)
            break
        except FileExistsError:
            continue  # someone else's file (or a planted one) has this name: draw again
    else:
        raise FileExistsError(f"no free temporary name next to {target}")
    try:
        try:
            # On the descriptor, never by path: the umask may have narrowed the mode at
            # creation, and a path could be swapped for a symlink meanwhile.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
