"""`sendfile --path` reading, by hand: the bound holds even when a file's size lies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2p_comm.daemon.agent import sendpath
from p2p_comm.daemon.base.errors import CommandError
from p2p_comm.paths import HomePaths


def test_a_file_that_says_it_is_small_is_read_only_one_byte_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a /proc file (size 0) or a file that grows after the size was looked at."""
    source = tmp_path / "grows.bin"
    source.write_bytes(b"x" * 5000)
    real_stat, real_fstat, real_read = os.stat, os.fstat, os.read

    def small(result: os.stat_result) -> os.stat_result:
        fields = list(result)
        fields[6] = 0  # st_size
        return os.stat_result(fields)

    asked: list[int] = []

    def counting_read(fd: int, count: int) -> bytes:
        asked.append(count)
        return real_read(fd, count)

    monkeypatch.setattr(sendpath.os, "stat", lambda p, **k: small(real_stat(p, **k)))
    monkeypatch.setattr(sendpath.os, "fstat", lambda fd: small(real_fstat(fd)))
    monkeypatch.setattr(sendpath.os, "read", counting_read)
    home = HomePaths(tmp_path / "home")
    with pytest.raises(CommandError) as refused:
        sendpath.read_regular_file(str(source), 1000, home)
    assert refused.value.code == "too_large"
    assert sum(asked) == 1001


def test_a_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    source = tmp_path / "exact.bin"
    source.write_bytes(os.urandom(3 << 20))
    home = HomePaths(tmp_path / "home")
    assert sendpath.read_regular_file(str(source), 3 << 20, home) == source.read_bytes()
    with pytest.raises(CommandError) as refused:
        sendpath.read_regular_file(str(source), (3 << 20) - 1, home)
    assert refused.value.code == "too_large"


def test_files_directly_in_the_home_are_refused_but_received_files_are_not(
    tmp_path: Path,
) -> None:
    home = HomePaths(tmp_path / "home")
    home.home.mkdir()
    backup = home.home / "p2p-identity.old.json"
    backup.write_text("{}")
    with pytest.raises(CommandError) as refused:
        sendpath.read_regular_file(str(backup), 1000, home)
    assert refused.value.code == "not_allowed"
    received = home.files / "call" / "report.txt"
    received.parent.mkdir(parents=True)
    received.write_text("forward me")
    assert sendpath.read_regular_file(str(received), 1000, home) == b"forward me"
