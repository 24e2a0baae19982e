"""Files replaced whole never write through a planted symlink (issue 18, finding 7)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, cast

from p2p_comm.atomicfile import replace_file
from p2p_comm.daemon.calls.records import Records
from p2p_comm.paths import HomePaths


def _victim(path: Path) -> Path:
    path.write_text("mine\n")
    path.chmod(0o644)
    return path


def _untouched(victim: Path) -> None:
    assert victim.read_text() == "mine\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = _victim(tmp_path / "victim")
    target = tmp_path / "out.txt"
    target.symlink_to(victim)
    replace_file(str(target), b"new\n", 0o600)
    _untouched(victim)
    assert not target.is_symlink() and target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "victim"]


def test_transcripts_ignore_the_old_fixed_temporary_names(tmp_path: Path) -> None:
    """The transcripts folder is inside the owner-only home, so only a stale or hostile link
    left there could do this; the old code wrote through `.<call>.md.tmp`."""
    paths = HomePaths(tmp_path / "home")
    folder = paths.transcripts
    folder.mkdir(parents=True, mode=0o700)
    victims = []
    for suffix in (".md", ".json"):
        victim = _victim(tmp_path / f"victim{suffix}")
        (folder / f".abc{suffix}.tmp").symlink_to(victim)
        victims.append(victim)
    records = Records(paths, cast(Any, None), cast(Any, None))
    records.write_files("abc", "# markdown\n", "{}\n")
    for victim in victims:
        _untouched(victim)
    assert (folder / "abc.md").read_text() == "# markdown\n"
    assert (folder / "abc.json").read_text() == "{}\n"
    for name in ("abc.md", "abc.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
