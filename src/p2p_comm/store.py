"""Durable state in one SQLite database (WAL): calls, outbox, seen wraps, agent events,
transcripts, contacts, blocks, escalations.

The daemon owns the only connection. Every change happens inside `transaction()`: one per
command and one per inbound batch, committed only when all of it worked and rolled back on
any error, so nothing is recorded that did not happen. Outside a transaction the
connection only reads. The schema is versioned (``PRAGMA user_version``) and migrated
forward at open; a damaged file is reported, never replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .schema import upgrade_entry, upgrade_event

log = logging.getLogger("p2p.store")

SCHEMA_VERSION = 4

# Version 1 is the schema of the first release (user_version 0 on disk).
_V1 = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, peer TEXT NOT NULL, peer_name TEXT NOT NULL,
    direction TEXT NOT NULL, topic TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, core TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    call_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, event_json TEXT,
    status TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT, type TEXT NOT NULL,
    data TEXT NOT NULL, created_at REAL NOT NULL, read INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unread ON events (read, id);
CREATE TABLE IF NOT EXISTS transcript (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, at REAL NOT NULL,
    direction TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_call ON transcript (call_id, id);
CREATE TABLE IF NOT EXISTS contacts (
    pubkey TEXT PRIMARY KEY, name TEXT NOT NULL, added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blocked (pubkey TEXT PRIMARY KEY, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY, call_id TEXT NOT NULL, at REAL NOT NULL, text TEXT NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0
);
"""

# Version 2: the outbox keeps each message's content and rumor time (a retransmit is a
# fresh wrap of the same rumor) and forgets delivered rows; out-of-order messages are
# held durably until the gap before them fills.
_V2 = """
ALTER TABLE outbox ADD COLUMN content TEXT;
DELETE FROM outbox WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (call_id, status);
CREATE TABLE IF NOT EXISTS held (
    call_id TEXT NOT NULL, seq INTEGER NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);
"""

# Version 3: group calls (their roster; the pairwise sessions are ordinary calls).
_V3 = """
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at REAL NOT NULL
);
"""

# Version 4: forward secrecy (docs/PROTOCOL.md 3.12): each call's ratchet state, erased
# when the call ends, and the ratchet ciphertext of each unreceipted message (made once: a
# retransmission re-wraps the same bytes, never encrypts again).
_V4 = """
CREATE TABLE IF NOT EXISTS ratchets (call_id TEXT PRIMARY KEY, state TEXT NOT NULL);
ALTER TABLE outbox ADD COLUMN sealed TEXT;
"""

MIGRATIONS = {1: _V1, 2: _V2, 3: _V3, 4: _V4}


class StorageError(Exception):
    """The database cannot be used or written; the message is one sentence for the user."""


def _describe(path: Path, exc: sqlite3.Error) -> StorageError:
    text = str(exc)
    if "full" in text:
        return StorageError(f"cannot save state: the disk holding {path} is full ({text}).")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StorageError(
            f"the state database {path} is damaged ({text}); move it away to start afresh "
            "(its calls, contacts and blocks are then lost) or restore it from a backup."
        )
    return StorageError(f"cannot use the state database {path}: {text}.")


BUSY_TIMEOUT_MS = 5000  # sqlite3.connect's default, 5 s, restored after a WAL reset


class Store:
    """The daemon's database. Not thread-safe: used from the event loop only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists() and path.stat().st_size == 0:
            raise StorageError(
                f"the state database {path} is empty (0 bytes), so it was damaged; move it away "
                "to start afresh (its calls, contacts and blocks are then lost) or restore it."
            )
        fresh = not path.exists()
        target = path.with_name(path.name + ".new") if fresh else path
        if fresh:
            target.unlink(missing_ok=True)
        try:
            self._db = sqlite3.connect(target, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # Deleted rows (ratchet keys, receipted messages) are overwritten with zeros,
            # not left in free pages (docs/PROTOCOL.md 3.12.5).
            self._db.execute("PRAGMA secure_delete=ON")
            # NORMAL in WAL mode survives a process crash; only an OS crash can lose the
            # last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise _describe(path, exc) from None
        if fresh:
            # Built aside and renamed: a file at the real path is always a whole database,
            # so an empty one there can only mean damage.
            self._db.close()
            for suffix in ("-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            os.replace(target, path)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._wal_reset_due = False

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            has_tables = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='calls'"
            ).fetchone()
            version = 1 if has_tables else 0
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"the state database {self.path} was written by a newer p2p-comm "
                f"(schema {version}); upgrade p2p-comm."
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {step}")
            self._db.execute("COMMIT")

    # Transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All changes inside commit together, or none does (nested uses join the outer)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _describe(self.path, exc) from None
        self._depth = 1
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._after_commit.clear()
            self._wal_reset_due = (
                False  # its reset went with the rollback; the next erasure asks again
            )
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")  # may already be rolled back (disk full)
            if isinstance(exc, sqlite3.Error):
                raise _describe(self.path, exc) from None
            raise
        finally:
            self._depth = 0
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # what already committed stands; the follow-up is logged
                log.exception("a follow-up of a committed transaction failed")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction has committed (never on rollback)."""
        if self._depth:
            self._after_commit.append(callback)
        else:
            callback()

    def close(self) -> None:
        self._empty_wal()
        self._db.close()

    def erased(self) -> None:
        """Key material was deleted in the current transaction: once it commits, fold the
        WAL into the database and empty it. ``secure_delete`` zeroes the freed bytes in the
        database's pages, but the WAL keeps earlier images of those pages until it is
        reset; another process holding the database open (a backup, a reader) would also
        keep SQLite from removing it when we close."""
        if self._wal_reset_due:
            return
        self._wal_reset_due = True
        self.after_commit(self._empty_wal)

    def _empty_wal(self) -> None:
        self._wal_reset_due = False
        # Without waiting for another process's readers (the event loop must not stall on a
        # backup): busy, it is tried again at the next erasure and at close.
        try:
            self._db.execute("PRAGMA busy_timeout = 0")
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            busy, reason = 1, str(exc)
        else:
            reason = "another process is reading the database"
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if busy:
            log.info("could not empty the WAL now: %s", reason)

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

    def load_call(self, call_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT core FROM calls WHERE id = ?", (call_id,)).fetchone()
        return json.loads(row["core"]) if row else None

    def save_group(self, group_id: str, data: dict[str, Any], now: float) -> None:
        self._db.execute(
            "INSERT INTO groups VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
            " data = excluded.data, updated_at = excluded.updated_at",
            (group_id, json.dumps(data), now),
        )

    def load_groups(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM groups ORDER BY updated_at")
        return [json.loads(row["data"]) for row in rows]

    # Outbox ---------------------------------------------------------------------------

    def outbox_put(
        self,
        call_id: str,
        seq: int,
        kind: str,
        content: str,
        created_at: float,
        sealed: str | None = None,
        waiting: bool = False,
    ) -> None:
        """Record one of our messages until the peer receipts it (``sealed``: its ratchet
        ciphertext, on a call with forward secrecy; ``waiting``: not to be published until
        the call's ratchet lets us seal it, `outbox_release`)."""
        self._db.execute(
            "INSERT OR REPLACE INTO outbox (call_id, seq, type, event_json, status, created_at,"
            " content, sealed) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)",
            (call_id, seq, kind, "waiting" if waiting else "queued", created_at, content, sealed),
        )

    def outbox_waiting(self, call_id: str | None = None) -> list[tuple[str, int, str, float]]:
        """(call, seq, content, rumor time) of messages waiting for their call's ratchet,
        of one call or all, in seq order."""
        rows = self._db.execute(
            "SELECT call_id, seq, content, created_at FROM outbox WHERE status = 'waiting'"
            + (" AND call_id = ?" if call_id is not None else "")
            + " ORDER BY call_id, seq",
            (call_id,) if call_id is not None else (),
        )
        return [(r["call_id"], r["seq"], r["content"], r["created_at"]) for r in rows]

    def outbox_release(self, call_id: str, seq: int, sealed: str) -> None:
        """A waiting message, sealed under the ratchet now: queued for publication."""
        self._db.execute(
            "UPDATE outbox SET status = 'queued', sealed = ? WHERE call_id = ? AND seq = ?",
            (sealed, call_id, seq),
        )

    def outbox_message(self, call_id: str, seq: int) -> tuple[str | None, str | None, float]:
        """(content, legacy signed wrap, rumor time) of a message not yet receipted."""
        row = self._db.execute(
            "SELECT content, event_json, created_at FROM outbox WHERE call_id = ? AND seq = ?",
            (call_id, seq),
        ).fetchone()
        if row is None:
            return None, None, 0.0
        return row["content"], row["event_json"], row["created_at"]

    def outbox_sealed(self, call_id: str, seq: int) -> tuple[str | None, bool]:
        """The ratchet ciphertext kept for a message, if it was sent under the ratchet, and
        whether it still waits for the ratchet (then it is not published at all)."""
        row = self._db.execute(
            "SELECT sealed, status FROM outbox WHERE call_id = ? AND seq = ?", (call_id, seq)
        ).fetchone()
        return (None, False) if row is None else (row["sealed"], row["status"] == "waiting")

    # Ratchet states (forward secrecy) -------------------------------------------------

    def save_ratchet(self, call_id: str, state: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO ratchets (call_id, state) VALUES (?, ?)",
            (call_id, json.dumps(state, separators=(",", ":"))),
        )

    def drop_ratchet(self, call_id: str) -> None:
        self._db.execute("DELETE FROM ratchets WHERE call_id = ?", (call_id,))
        self.erased()

    def ratchets(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.execute("SELECT call_id, state FROM ratchets")
        return [(row["call_id"], json.loads(row["state"])) for row in rows]

    def outbox_mark_sent(self, call_id: str, seq: int) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'sent' WHERE call_id = ? AND seq = ? AND status = 'queued'",
            (call_id, seq),
        )

    def outbox_forget(self, call_id: str, seqs: Iterable[int]) -> None:
        """The peer receipted these: their rows are no longer needed."""
        self._db.executemany(
            "DELETE FROM outbox WHERE call_id = ? AND seq = ?", [(call_id, seq) for seq in seqs]
        )

    def outbox_unacked(self) -> dict[str, tuple[list[int], set[int]]]:
        """Per call: every unreceipted seq, and those no relay has taken yet."""
        found: dict[str, tuple[list[int], set[int]]] = {}
        for row in self._db.execute("SELECT call_id, seq, status FROM outbox ORDER BY seq"):
            seqs, queued = found.setdefault(row["call_id"], ([], set()))
            seqs.append(row["seq"])
            if row["status"] == "queued":
                queued.add(row["seq"])
        return found

    def outbox_oldest(self) -> dict[str, tuple[int, float]]:
        """Per call with unreceipted messages: how many, and when the oldest was sent (the
        outbox holds only unreceipted rows, so this stays small)."""
        rows = self._db.execute(
            "SELECT call_id, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox GROUP BY call_id"
        )
        return {row["call_id"]: (row["n"], row["oldest"]) for row in rows}

    # Messages held until the gap before them fills --------------------------------------

    def hold(self, call_id: str, seq: int, content: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO held VALUES (?, ?, ?)", (call_id, seq, content))

    def release(self, call_id: str, below: int) -> None:
        self._db.execute("DELETE FROM held WHERE call_id = ? AND seq < ?", (call_id, below))

    def drop_held_except(self, calls: set[str]) -> None:
        """Delete what is held for any call not in ``calls``."""
        rows = self._db.execute("SELECT DISTINCT call_id FROM held").fetchall()
        for (call_id,) in rows:
            if call_id not in calls:
                self._db.execute("DELETE FROM held WHERE call_id = ?", (call_id,))

    def held(self) -> list[tuple[str, int, str]]:
        rows = self._db.execute("SELECT call_id, seq, content FROM held ORDER BY call_id, seq")
        return [(row["call_id"], row["seq"], row["content"]) for row in rows]

    # Agent events -------------------------------------------------------------------------

    def add_event(self, call_id: str | None, kind: str, data: dict[str, Any], now: float) -> int:
        cursor = self._db.execute(
            "INSERT INTO events (call_id, type, data, created_at) VALUES (?, ?, ?, ?)",
            (call_id, kind, json.dumps(data), now),
        )
        return int(cursor.lastrowid or 0)

    def unread(
        self, call_prefix: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        query = "SELECT id, data FROM events WHERE read = 0 AND id > ?"
        args: list[Any] = [after]
        if call_prefix:
            query += " AND call_id LIKE ?"
            args.append(call_prefix.replace("%", "").replace("_", "") + "%")
        rows = self._db.execute(query + " ORDER BY id LIMIT ?", (*args, limit))
        return [{"event_id": row["id"], **upgrade_event(json.loads(row["data"]))} for row in rows]

    def mark_read(self, ids: Iterable[int], erase: bool = False) -> int:
        """Mark unread events read (``erase``: delete them instead); how many were unread."""
        query = (
            "DELETE FROM events WHERE id = ? AND read = 0"
            if erase
            else "UPDATE events SET read = 1 WHERE id = ? AND read = 0"
        )
        cursor = self._db.executemany(query, [(i,) for i in ids])
        return cursor.rowcount

    def is_unread(self, event_id: int) -> bool:
        row = self._db.execute("SELECT read FROM events WHERE id = ?", (event_id,)).fetchone()
        return row is not None and row["read"] == 0

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

    def drop_entries(self, call_id: str) -> None:
        """Erase a call's transcript entries (``keep_transcripts`` false)."""
        self._db.execute("DELETE FROM transcript WHERE call_id = ?", (call_id,))

    def entries(self, call_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, direction, type, data FROM transcript WHERE call_id = ? ORDER BY id",
            (call_id,),
        )
        return [
            upgrade_entry(
                {
                    "at": row["at"],
                    "direction": row["direction"],
                    "type": row["type"],
                    **json.loads(row["data"]),
                }
            )
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

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM settings WHERE key = ?", (key,))

    def prefixed(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) of every setting whose key starts with ``prefix``, by key."""
        rows = self._db.execute(
            "SELECT key, value FROM settings WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        ).fetchall()
        return [(str(row["key"]), str(row["value"])) for row in rows]

    def has_history(self) -> bool:
        """Whether this database holds anything an agent would miss (calls, contacts, blocks)."""
        for table in ("calls", "contacts", "blocked"):
            if self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return True
        return False

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
