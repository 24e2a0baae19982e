"""Received file names and placement: the path-traversal defence, without a daemon."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from p2p_comm.daemon.calls.file_sink import FileSink
from p2p_comm.paths import HomePaths
from p2p_comm.protocol.events import FileComplete, WriteChunk
from p2p_comm.protocol.files import numbered, safe_file_name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        (".bashrc", "bashrc"),
        ("...", "file"),
        ("", "file"),
        ("-rf", "rf"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("a\x1b[31mred\x1b[0m.txt", "ared.txt"),
        ("x" * 500 + ".txt", "x" * 120 + ".txt"),
        ("name with spaces.md", "name with spaces.md"),
    ],
)
def test_a_peer_chosen_name_becomes_a_plain_safe_name(given: str, expected: str) -> None:
    assert safe_file_name(given) == expected


def test_a_taken_name_gets_a_number() -> None:
    assert numbered("report.pdf", 2) == "report-2.pdf"
    assert numbered("README", 3) == "README-3"


def test_chunks_are_written_in_place_checked_and_never_placed_over_a_file(tmp_path: Path) -> None:
    sink = FileSink(HomePaths(tmp_path))
    data = b"hello, world"
    digest = hashlib.sha256(data).hexdigest()
    call_id = "c" * 32
    for attempt in range(2):
        fid = f"{attempt:032d}"
        # Out of order and repeated, as after a restart: positional writes make it whole.
        sink.write(call_id, WriteChunk(fid, 7, data[7:]))
        sink.write(call_id, WriteChunk(fid, 0, data[:7]))
        sink.write(call_id, WriteChunk(fid, 7, data[7:]))
        placed = sink.complete(call_id, FileComplete(fid, "../x.txt", len(data), digest, 3))
        assert placed is not None
        assert Path(placed["path"]).parent == tmp_path / "p2p-files" / call_id
        assert Path(placed["path"]).read_bytes() == data
        assert (Path(placed["path"]).stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in (tmp_path / "p2p-files" / call_id).iterdir()) == [
        "x-2.txt",
        "x.txt",
    ]


def test_a_file_failing_its_hash_is_removed_not_placed(tmp_path: Path) -> None:
    sink = FileSink(HomePaths(tmp_path))
    sink.write("c" * 32, WriteChunk("f" * 32, 0, b"tampered"))
    done = FileComplete("f" * 32, "a.txt", 8, hashlib.sha256(b"original").hexdigest(), 1)
    assert sink.complete("c" * 32, done) is None
    assert list((tmp_path / "p2p-files" / ("c" * 32)).iterdir()) == []


def test_sweep_removes_only_partials_no_transfer_will_finish(tmp_path: Path) -> None:
    """Issue 21, finding 9: partial files of transfers that never finish are cleaned."""
    sink = FileSink(HomePaths(tmp_path))
    live, gone = "a" * 32, "b" * 32
    for call_id, fid in ((live, "f1"), (live, "f2"), (gone, "f3")):
        sink.write(call_id, WriteChunk(fid, 0, b"x"))
    placed = tmp_path / "p2p-files" / live / "done.txt"
    placed.write_bytes(b"a received file stays")
    assert sink.sweep({live: {"f1"}}) == 2
    assert sorted(p.name for p in (tmp_path / "p2p-files").rglob("*") if p.is_file()) == [
        ".partial-f1",
        "done.txt",
    ]
    assert sink.sweep({live: {"f1"}}) == 0
