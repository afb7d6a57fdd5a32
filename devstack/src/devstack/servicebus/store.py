"""SQLite persistence for `--data-file`: messages, duplicate-detection history, session state.

Writes are grouped: the first write opens a transaction and `commit()` ends it. The server commits each time
it has handled the events at hand and before it writes to any socket, so nothing is acknowledged to a client
before it is committed (group commit, no fsync per message). WAL mode with `synchronous=NORMAL`: a process
crash loses nothing acknowledged; only an operating-system crash could lose the last commits.
Locks are not stored: after a restart every message is available again, as after a lock expiry.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from devstack.servicebus.entities import StoredMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    entity TEXT NOT NULL,
    sequence_number INTEGER NOT NULL,
    state TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    expires_at REAL,
    scheduled_at REAL,
    delivery_count INTEGER NOT NULL,
    dead_letter_source TEXT,
    PRIMARY KEY (entity, sequence_number)
);
CREATE TABLE IF NOT EXISTS duplicates (
    entity TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (entity, message_id)
);
CREATE TABLE IF NOT EXISTS session_states (
    entity TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    updated_at REAL,
    PRIMARY KEY (entity, session_id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class MessageRecord:
    entity: str
    sequence_number: int
    state: str
    body: bytes
    enqueued_at: float
    expires_at: float | None
    scheduled_at: float | None
    delivery_count: int
    dead_letter_source: str | None


class Store:
    """One SQLite file holding the namespace's durable state."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(_SCHEMA)
        self._add_missing_columns()
        self._in_transaction = False

    def _add_missing_columns(self) -> None:
        """Bring a data file written by an older emulator up to the current schema."""
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(session_states)")}
        if "updated_at" not in columns:
            self._connection.execute("ALTER TABLE session_states ADD COLUMN updated_at REAL")

    def close(self) -> None:
        self.commit()
        self._connection.close()

    def commit(self) -> None:
        """Make every write since the last commit durable."""
        if self._in_transaction:
            self._connection.execute("COMMIT")
            self._in_transaction = False

    def _write(self, statement: str, parameters: tuple[object, ...]) -> None:
        if not self._in_transaction:
            self._connection.execute("BEGIN")
            self._in_transaction = True
        self._connection.execute(statement, parameters)

    def put_message(self, entity: str, message: StoredMessage) -> None:
        self._write(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entity.lower(),
                message.sequence_number,
                message.state.value,
                message.envelope.encode(),
                message.enqueued_at,
                message.expires_at,
                message.scheduled_at,
                message.delivery_count,
                message.dead_letter_source,
            ),
        )

    def delete_message(self, entity: str, sequence_number: int) -> None:
        self._write(
            "DELETE FROM messages WHERE entity = ? AND sequence_number = ?", (entity.lower(), sequence_number)
        )

    def load_messages(self) -> Iterator[MessageRecord]:
        rows = self._connection.execute("SELECT * FROM messages ORDER BY sequence_number").fetchall()
        for row in rows:
            yield MessageRecord(*row)

    def put_duplicate(self, entity: str, message_id: str, seen_at: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO duplicates VALUES (?, ?, ?)", (entity.lower(), message_id, seen_at)
        )

    def delete_duplicate(self, entity: str, message_id: str) -> None:
        self._write(
            "DELETE FROM duplicates WHERE entity = ? AND message_id = ?", (entity.lower(), message_id)
        )

    def load_duplicates(self) -> list[tuple[str, str, float]]:
        return self._connection.execute(
            "SELECT entity, message_id, seen_at FROM duplicates ORDER BY seen_at"
        ).fetchall()

    def put_session_state(
        self, entity: str, session_id: str, state: bytes | None, *, updated_at: float
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO session_states (entity, session_id, state, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (entity.lower(), session_id, state, updated_at),
        )

    def load_session_states(self) -> list[tuple[str, str, bytes | None, float | None]]:
        return self._connection.execute(
            "SELECT entity, session_id, state, updated_at FROM session_states"
        ).fetchall()

    def put_sequence(self, value: int) -> None:
        self._write("INSERT OR REPLACE INTO counters VALUES ('sequence', ?)", (value,))

    def load_sequence(self) -> int:
        row = self._connection.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
        return int(row[0]) if row else 0
