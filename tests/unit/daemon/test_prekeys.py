"""daemon/relays/prekeys.py: a signed prekey replaced daily, kept two days and an hour after
its last announcement expired, then erased; and the store's erasure reaching the WAL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from p2p_comm.daemon.relays.prekeys import KEEP_AFTER, ROTATE_AFTER, Prekeys
from p2p_comm.protocol import ratchet
from p2p_comm.store import Store

DAY = 86_400.0
LIFETIME = 300.0  # a presence's lifetime


def _announce(prekeys: Prekeys, now: float) -> str:
    asyncio.run(prekeys.refresh(now))
    return prekeys.announce(now, LIFETIME)


def test_a_prekey_is_replaced_daily_and_erased_after_its_keeping_time(tmp_path: Path) -> None:
    prekeys = Prekeys(Store(tmp_path / "state.db"))
    t0 = 1_000_000.0
    first = _announce(prekeys, t0)
    assert len(first) == 64 and prekeys.held() == [first]
    private = prekeys.private(first)
    assert private is not None and ratchet.public_of(private.private_bytes_raw()).hex() == first
    # Announced again and again within the day: the same key.
    assert {_announce(prekeys, t0 + s) for s in (60, 3600, ROTATE_AFTER - 1)} == {first}
    last_seen = t0 + ROTATE_AFTER - 1 + LIFETIME  # its last presence expires then
    second = _announce(prekeys, t0 + ROTATE_AFTER)
    assert second != first and sorted(prekeys.held()) == sorted([first, second])
    # A request to the first may still arrive: kept until two days and an hour on.
    _announce(prekeys, last_seen + KEEP_AFTER - 1)
    assert prekeys.private(first) is not None
    _announce(prekeys, last_seen + KEEP_AFTER + 1)
    assert prekeys.private(first) is None and first not in prekeys.held()


def test_a_daemon_back_after_days_replaces_and_erases_at_once(tmp_path: Path) -> None:
    prekeys = Prekeys(Store(tmp_path / "state.db"))
    first = _announce(prekeys, 1_000_000.0)
    second = _announce(prekeys, 1_000_000.0 + 3 * DAY + 7200)
    assert second != first and prekeys.held() == [second]


def test_erased_key_material_leaves_no_trace_in_the_wal_with_a_reader_attached(
    tmp_path: Path,
) -> None:
    """secure_delete zeroes the database's freed bytes; the WAL kept the earlier page
    images, and a second connection (a backup, a reader) kept SQLite from removing it."""
    store = Store(tmp_path / "state.db")
    secret = "5e" * 32
    with store.transaction():
        store.save_ratchet("ab" * 16, {"cks": secret})
    reader = sqlite3.connect(tmp_path / "state.db")
    reader.execute("SELECT COUNT(*) FROM settings").fetchall()
    with store.transaction():
        store.drop_ratchet("ab" * 16)
    store.close()
    found = [p.name for p in tmp_path.iterdir() if secret.encode() in p.read_bytes()]
    reader.close()
    assert found == []


def test_a_rolled_back_erasure_does_not_stop_later_ones_emptying_the_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    secret = "6f" * 32
    with store.transaction():
        store.save_ratchet("ab" * 16, {"cks": "7a" * 32})
        store.save_ratchet("cd" * 16, {"cks": secret})
    try:
        with store.transaction():
            store.drop_ratchet("ab" * 16)
            raise RuntimeError("the batch failed")
    except RuntimeError:
        pass
    reader = sqlite3.connect(tmp_path / "state.db")
    reader.execute("SELECT COUNT(*) FROM settings").fetchall()
    with store.transaction():
        store.drop_ratchet("cd" * 16)
    wal = tmp_path / "state.db-wal"
    found = wal.exists() and secret.encode() in wal.read_bytes()
    reader.close()
    store.close()
    assert not found


def test_a_key_maker_that_hangs_costs_an_announcement_its_prekey_not_the_announcements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from p2p_comm.daemon.relays import prekeys as module

    monkeypatch.setattr(module, "_MAKE", "import time; time.sleep(60)")
    monkeypatch.setattr(module, "MAKE_TIMEOUT", 0.5)
    prekeys = Prekeys(Store(tmp_path / "state.db"))
    asyncio.run(asyncio.wait_for(prekeys.refresh(0.0), 10))  # gives up, does not raise
    assert prekeys.announce(0.0, LIFETIME) == "" and prekeys.due(0.0)
