"""The SQLite store, on a real database file."""

from pathlib import Path

from p2p_comm.store import Store


def test_prune_forgets_only_old_processed_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.mark_seen("old", 100.0)
    store.mark_seen("recent", 200.0)
    store.prune_seen(before=150.0)
    assert not store.seen("old") and store.seen("recent")


def test_outbox_keeps_the_signed_event_until_receipted(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    store.outbox_put("c", 1, "message", '{"id": "e1"}', 0.0)
    store.outbox_put("c", 2, "message", '{"id": "e2"}', 0.0)
    store.outbox_mark_sent("c", 1)
    store.commit()
    store.close()
    store = Store(path)  # survives a reopen, as after a crash
    assert store.outbox_event("c", 1) == '{"id": "e1"}'
    assert store.delivery_counts("c") == {"queued": 1, "sent": 1, "delivered": 0}
    store.outbox_mark_delivered("c", [1])
    assert store.outbox_event("c", 1) is None, "a receipted event is not kept or re-sent"
    assert store.outbox_event("c", 2) == '{"id": "e2"}'
    assert store.delivery_counts("c") == {"queued": 1, "sent": 0, "delivered": 1}
