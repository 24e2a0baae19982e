"""What an older version left world-readable under the home is made owner-only at start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2p_comm.daemon.process import tighten
from p2p_comm.paths import HomePaths


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_loose_state_files_and_folders_are_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    paths = HomePaths(home)
    outside = tmp_path / "not-ours.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    loose = [paths.database, home / "p2p-state.sqlite3-wal", paths.log, paths.escalations]
    for path in loose:
        path.write_text("x")
        path.chmod(0o644)
    (paths.files / "c1").mkdir(parents=True, mode=0o755)
    received = paths.files / "c1" / "a.txt"
    received.write_text("x")
    received.chmod(0o644)
    (paths.files / "c1" / "link").symlink_to(outside)
    tighten(paths)
    assert all(mode(path) == 0o600 for path in [*loose, received])
    assert mode(paths.files) == mode(paths.files / "c1") == 0o700
    assert mode(outside) == 0o644, "a symlink is never followed"
    assert mode(home) == 0o755, "the home is the user's"
