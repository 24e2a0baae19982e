"""Received files: chunks written in place, then checked and placed under a safe name."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ...paths import HomePaths, ensure_private_dir
from ...protocol.events import FileComplete, WriteChunk
from ...protocol.files import numbered, safe_file_name
from ...sanitize import clean_label

log = logging.getLogger("p2p.files")

PARTIAL = ".partial-"  # a file being received: PARTIAL + its file id, in its call's folder


class FileSink:
    """Writes chunks to a hidden partial file per transfer; verifies and links the result."""

    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths

    def partial_path(self, call_id: str, fid: str) -> Path:
        ensure_private_dir(self.paths.files)
        folder = self.paths.files / call_id
        ensure_private_dir(folder)
        return folder / f"{PARTIAL}{fid}"

    def sweep(self, in_progress: dict[str, set[str]]) -> int:
        """Remove the partial files of transfers that can never finish: of calls not in
        ``in_progress`` (call id -> the file ids still being received), or of file ids not in
        their call's set. Returns how many went."""
        removed = 0
        try:
            folders = list(os.scandir(self.paths.files))
        except FileNotFoundError:
            return 0
        for folder in folders:
            if not folder.is_dir(follow_symlinks=False):
                continue
            keep = in_progress.get(folder.name, set())
            for entry in os.scandir(folder.path):
                fid = entry.name.removeprefix(PARTIAL)
                if entry.name.startswith(PARTIAL) and fid not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        if removed:
            log.info("removed %d partial files of transfers that cannot finish", removed)
        return removed

    def write(self, call_id: str, chunk: WriteChunk) -> None:
        """Positional and idempotent: a chunk written twice (after a rollback) is harmless."""
        fd = os.open(self.partial_path(call_id, chunk.fid), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, chunk.data, chunk.offset)
        finally:
            os.close(fd)

    def complete(self, call_id: str, done: FileComplete) -> dict[str, Any] | None:
        """The agent-facing fields of a verified, placed file; None if it failed its check
        (the partial file is then removed)."""
        partial = self.partial_path(call_id, done.fid)
        if not partial.exists():
            partial.touch(mode=0o600)  # an empty file has no chunk data to write
        digest = hashlib.sha256()
        with open(partial, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        size = partial.stat().st_size
        if size != done.size or digest.hexdigest() != done.sha256:
            log.warning("call %s: file %r failed its integrity check", call_id[:8], done.name)
            partial.unlink(missing_ok=True)
            return None
        final = self._place(partial, safe_file_name(done.name))
        return {
            "file_name": final.name,
            "original_name": clean_label(done.name, 255),
            "path": str(final),
            "bytes": done.size,
            "sha256": done.sha256,
        }

    def _place(self, partial: Path, name: str) -> Path:
        """Link the verified file under a free name: never over an existing file."""
        folder = partial.parent
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        for number in range(1, 10_000):
            candidate = folder / (name if number == 1 else numbered(name, number))
            try:
                os.link(partial, candidate)
            except FileExistsError:
                continue
            partial.unlink()
            return candidate
        raise OSError(f"no free name for {name}")
