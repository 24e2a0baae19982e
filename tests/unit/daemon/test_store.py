"""The SQLite store, on a real database file: transactions, migrations, damage."""

import sqlite3
from pathlib import Path

import pytest

from p2p_comm.store import SCHEMA_VERSION, StorageError, Store


def test_prune_forgets_only_old_processed_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    with store.transaction():
        store.mark_seen("old", 100.0)
        store.mark_seen("recent", 200.0)
        store.prune_seen(before=150.0)
    assert not store.seen("old") and store.seen("recent")


def test_outbox_keeps_each_message_until_receipted(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    with store.transaction():
        store.outbox_put("c", 1, "message", '{"type":"message"}', 10.0)
        store.outbox_put("c", 2, "message", '{"type":"end"}', 11.0)
        store.outbox_mark_sent("c", 1)
    store.close()
    store = Store(path)  # survives a reopen, as after a crash
    assert store.outbox_unacked() == {"c": ([1, 2], {2})}
    assert store.outbox_message("c", 1) == ('{"type":"message"}', None, 10.0)
    with store.transaction():
        store.outbox_forget("c", [1])
    assert store.outbox_message("c", 1) == (None, None, 0.0), "a receipted message is gone"
    assert store.outbox_unacked() == {"c": ([2], {2})}


def test_a_failed_transaction_leaves_no_trace_and_runs_no_follow_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    ran: list[str] = []
    with pytest.raises(RuntimeError), store.transaction():
        store.add_entry("c", 1.0, "out", "message", {"text": "never sent"})
        store.after_commit(lambda: ran.append("told"))
        raise RuntimeError("the core refused")
    assert store.entries("c") == [] and ran == []
    with store.transaction():
        store.add_entry("c", 2.0, "out", "message", {"text": "sent"})
        store.after_commit(lambda: ran.append("told"))
    assert [e["text"] for e in store.entries("c")] == ["sent"] and ran == ["told"]


def test_events_stay_unread_until_acknowledged(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    with store.transaction():
        first = store.add_event("aa11", "message", {"type": "message", "text": "1"}, 1.0)
        second = store.add_event("bb22", "message", {"type": "message", "text": "2"}, 2.0)
    assert [e["event_id"] for e in store.unread()] == [first, second]
    assert [e["event_id"] for e in store.unread()] == [first, second], "reading consumes nothing"
    assert [e["event_id"] for e in store.unread("bb")] == [second]
    assert [e["event_id"] for e in store.unread(after=first)] == [second]
    with store.transaction():
        assert store.mark_read([first]) == 1
    assert [e["event_id"] for e in store.unread()] == [second]


def test_held_messages_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    with store.transaction():
        store.hold("c", 5, "five")
        store.hold("c", 7, "seven")
    store.close()
    store = Store(path)
    assert store.held() == [("c", 5, "five"), ("c", 7, "seven")]
    with store.transaction():
        store.release("c", below=6)
    assert store.held() == [("c", 7, "seven")]


def test_a_first_release_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE calls (id TEXT PRIMARY KEY, peer TEXT NOT NULL, peer_name TEXT NOT NULL,"
        " direction TEXT NOT NULL, topic TEXT NOT NULL, state TEXT NOT NULL,"
        " created_at REAL NOT NULL, updated_at REAL NOT NULL, core TEXT NOT NULL);"
        "CREATE TABLE outbox (call_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
        " event_json TEXT, status TEXT NOT NULL, created_at REAL NOT NULL,"
        " PRIMARY KEY (call_id, seq));"
        "INSERT INTO outbox VALUES ('c', 1, 'message', NULL, 'delivered', 1.0);"
        "INSERT INTO outbox VALUES ('c', 2, 'message', '{\"id\":\"w\"}', 'sent', 2.0);"
    )
    old.commit()
    old.close()
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # Delivered rows are dropped; an unreceipted one keeps its signed wrap to re-send.
    assert store.outbox_unacked() == {"c": ([2], set())}
    assert store.outbox_message("c", 2) == (None, '{"id":"w"}', 2.0)


def test_an_empty_database_file_is_damage_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"")
    with pytest.raises(StorageError, match=str(path)):
        Store(path)
    assert path.read_bytes() == b"", "the damaged file is left as it was"


def test_a_garbage_database_file_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="damaged"):
        Store(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_a_new_database_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store(path).close()
    assert path.stat().st_size > 0
    assert not (tmp_path / "state.sqlite3.new").exists()
