"""Durable state in one SQLite database (WAL): calls, outbox, seen events, events, transcripts.

The daemon owns the only connection and commits once per batch of work, so a crash
loses at most the batch in flight, which the peer re-sends (nothing is receipted
before it is committed).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    peer_name TEXT NOT NULL,
    direction TEXT NOT NULL,
    topic TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    core TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    event_json TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS seen (
    event_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    read INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unread ON events (read, id);
CREATE TABLE IF NOT EXISTS transcript (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    at REAL NOT NULL,
    direction TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_call ON transcript (call_id, id);
CREATE TABLE IF NOT EXISTS contacts (
    pubkey TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blocked (
    pubkey TEXT PRIMARY KEY,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    at REAL NOT NULL,
    text TEXT NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0
);
"""


class Store:
    """The daemon's database. Not thread-safe: used from the event loop only."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.execute("BEGIN")

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()

    # Seen wraps ---------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone()
        return row is not None

    def mark_seen(self, event_id: str, now: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (event_id, now))

    def prune_seen(self, before: float) -> None:
        self._db.execute("DELETE FROM seen WHERE seen_at < ?", (before,))

    # Calls ----------------------------------------------------------------------------

    def save_call(self, core: dict[str, Any], peer_name: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO calls VALUES (:id, :peer, :peer_name, :direction, :topic, :state,"
            " :created_at, :now, :core) ON CONFLICT(id) DO UPDATE SET state = :state,"
            " peer_name = :peer_name, updated_at = :now, core = :core",
            {**core, "peer_name": peer_name, "now": now, "core": json.dumps(core)},
        )

    def load_calls(self) -> list[tuple[dict[str, Any], str]]:
        rows = self._db.execute("SELECT core, peer_name FROM calls ORDER BY created_at")
        return [(json.loads(row["core"]), row["peer_name"]) for row in rows]

    # Outbox ---------------------------------------------------------------------------

    def outbox_put(self, call_id: str, seq: int, kind: str, event_json: str, now: float) -> None:
        """Record a message's signed wrap, in the same commit as the call's state."""
        self._db.execute(
            "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, 'queued', ?)",
            (call_id, seq, kind, event_json, now),
        )

    def outbox_event(self, call_id: str, seq: int) -> str | None:
        """The signed wrap of a message not yet receipted, to publish again unchanged."""
        row = self._db.execute(
            "SELECT event_json FROM outbox WHERE call_id = ? AND seq = ? AND status != 'delivered'",
            (call_id, seq),
        ).fetchone()
        return row["event_json"] if row else None

    def outbox_mark_sent(self, call_id: str, seq: int) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'sent' WHERE call_id = ? AND seq = ? AND status = 'queued'",
            (call_id, seq),
        )

    def outbox_mark_delivered(self, call_id: str, seqs: Iterable[int]) -> None:
        # The signed event is no longer needed once the peer has receipted it.
        self._db.executemany(
            "UPDATE outbox SET status = 'delivered', event_json = NULL"
            " WHERE call_id = ? AND seq = ? AND status != 'delivered'",
            [(call_id, seq) for seq in seqs],
        )

    def delivery_counts(self, call_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) AS n FROM outbox WHERE call_id = ? GROUP BY status",
            (call_id,),
        )
        counts = {"queued": 0, "sent": 0, "delivered": 0}
        counts.update({row["status"]: row["n"] for row in rows})
        return counts

    # Agent events -------------------------------------------------------------------------

    def add_event(self, call_id: str | None, kind: str, data: dict[str, Any], now: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO events (call_id, type, data, created_at) VALUES (?, ?, ?, ?)",
            (call_id, kind, json.dumps(data), now),
        )
        return int(cursor.lastrowid or 0)

    def unread(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, data FROM events WHERE read = 0 ORDER BY id LIMIT ?", (limit,)
        )
        return [{"event_id": row["id"], **json.loads(row["data"])} for row in rows]

    def mark_read(self, ids: Iterable[int]) -> None:
        self._db.executemany("UPDATE events SET read = 1 WHERE id = ?", [(i,) for i in ids])

    def unread_counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT type, COUNT(*) AS n FROM events WHERE read = 0 GROUP BY type"
        )
        return {row["type"]: row["n"] for row in rows}

    # Transcripts --------------------------------------------------------------------------

    def add_entry(
        self, call_id: str, at: float, direction: str, kind: str, data: dict[str, Any]
    ) -> None:
        self._db.execute(
            "INSERT INTO transcript (call_id, at, direction, type, data) VALUES (?, ?, ?, ?, ?)",
            (call_id, at, direction, kind, json.dumps(data)),
        )

    def entries(self, call_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, direction, type, data FROM transcript WHERE call_id = ? ORDER BY id",
            (call_id,),
        )
        return [
            {
                "at": row["at"],
                "direction": row["direction"],
                "type": row["type"],
                **json.loads(row["data"]),
            }
            for row in rows
        ]

    # Escalations --------------------------------------------------------------------------

    def add_escalation(self, escalation_id: str, call_id: str, text: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO escalations (id, call_id, at, text) VALUES (?, ?, ?, ?)",
            (escalation_id, call_id, now, text),
        )

    def escalation_for_reply(self, named: str | None) -> tuple[str, str] | None:
        """(escalation id, call id): the one named, else the latest unanswered one."""
        if named:
            row = self._db.execute(
                "SELECT id, call_id FROM escalations WHERE id = ?", (named,)
            ).fetchone()
            if row:
                return row["id"], row["call_id"]
        row = self._db.execute(
            "SELECT id, call_id FROM escalations WHERE answered = 0 ORDER BY at DESC LIMIT 1"
        ).fetchone()
        return (row["id"], row["call_id"]) if row else None

    def mark_answered(self, escalation_id: str) -> None:
        self._db.execute("UPDATE escalations SET answered = 1 WHERE id = ?", (escalation_id,))

    # Small durable values -------------------------------------------------------------------

    def get(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row else default

    def put(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
            (key, value, value),
        )

    # Contacts and blocks ----------------------------------------------------------------------

    def add_contact(self, pubkey: str, name: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO contacts VALUES (?, ?, ?) ON CONFLICT(pubkey) DO UPDATE SET name = ?",
            (pubkey, name, now, name),
        )

    def remove_contact(self, pubkey: str) -> bool:
        return self._db.execute("DELETE FROM contacts WHERE pubkey = ?", (pubkey,)).rowcount > 0

    def contacts(self) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT pubkey, name FROM contacts ORDER BY name")
        return [(row["pubkey"], row["name"]) for row in rows]

    def block(self, pubkey: str, now: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO blocked VALUES (?, ?)", (pubkey, now))

    def unblock(self, pubkey: str) -> bool:
        return self._db.execute("DELETE FROM blocked WHERE pubkey = ?", (pubkey,)).rowcount > 0

    def blocked(self) -> set[str]:
        return {row["pubkey"] for row in self._db.execute("SELECT pubkey FROM blocked")}
