"""The batch journal (`DIR/.fluxclaw/journal.sqlite`): each row's state, key, task, cost, file.

A row's idempotency key is derived from the batch's own id, its line and what it asks for, and
written here before its create is sent; a run that is killed anywhere is re-run with the same
command, and each row then either is done (skipped), or is finished by its key (RunAPI replays
a create it already has), so nothing is paid twice.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Row states. `submitted` means the create may have gone out: the key finishes it.
PENDING, SUBMITTED, DONE, FAILED, ERROR, INVALID, OVER_BUDGET = (
    "pending",
    "submitted",
    "done",
    "failed",
    "error",
    "invalid",
    "over_budget",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    line INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    cost REAL,
    path TEXT,
    error TEXT,
    prompt TEXT NOT NULL DEFAULT '',
    model TEXT,
    aspect_ratio TEXT,
    resolution TEXT,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    fingerprint: str
    idempotency_key: str
    state: str
    task_id: str | None
    cost: float | None
    path: str | None
    error: str | None
    prompt: str
    model: str | None
    aspect_ratio: str | None
    resolution: str | None


class Journal:
    def __init__(self, folder: Path) -> None:
        self.path = folder / ".fluxclaw" / "journal.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection: sqlite3.Connection | None = None
        with self._db() as db:
            db.executescript(_SCHEMA)
            found = db.execute("SELECT value FROM meta WHERE key = 'batch_id'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta VALUES ('batch_id', ?)", (str(uuid.uuid4()),))
        self.path.chmod(0o600)
        self.batch_id = uuid.UUID(self._meta("batch_id"))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection for the journal's life; each use is one transaction. WAL with NORMAL
        sync: a commit survives the process being killed, without an fsync per row."""
        if self._connection is None:
            self._connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._connection.row_factory = sqlite3.Row
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
        with self._connection:
            yield self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _meta(self, key: str) -> str:
        with self._db() as db:
            return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def key_for(self, line: int, fingerprint: str) -> str:
        """The same row of the same batch always gets the same key."""
        return str(uuid.uuid5(self.batch_id, f"{line}:{fingerprint}"))

    def entries(self) -> dict[int, Entry]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM rows ORDER BY line").fetchall()
        return {row["line"]: Entry(**{f.name: row[f.name] for f in fields(Entry)}) for row in rows}

    def put(self, line: int, fingerprint: str, key: str, state: str, **values: Any) -> None:
        """Insert or replace a row's record (one transaction: it is on disk when this returns)."""
        fields = {
            "line": line,
            "fingerprint": fingerprint,
            "idempotency_key": key,
            "state": state,
            "updated_at": time.time(),
            **values,
        }
        names = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields if name != "line")
        with self._db() as db:
            db.execute(
                f"INSERT INTO rows ({names}) VALUES ({marks}) "
                f"ON CONFLICT(line) DO UPDATE SET {updates}",
                tuple(fields.values()),
            )
