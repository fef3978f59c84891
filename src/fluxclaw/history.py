"""A local SQLite log of every task, so a paid result is never lost and old work is searchable.

A row is written before the create request goes out (with its idempotency key), then updated as
the task moves; an interrupted run therefore leaves a row that `fluxclaw wait` can finish. The API
key is never stored: rows hold only prompts, parameters, ids, statuses, costs, URLs and paths.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    task_id TEXT UNIQUE,
    idempotency_key TEXT,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    cost REAL,
    error TEXT,
    urls TEXT NOT NULL DEFAULT '[]',
    paths TEXT NOT NULL DEFAULT '[]',
    base_url TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
"""


def default_path() -> Path:
    """`$FLUXCLAW_DATA_DIR/history.sqlite`, else the platform's user data folder."""
    override = os.environ.get("FLUXCLAW_DATA_DIR")
    if override:
        return Path(override) / "history.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("fluxclaw")) / "history.sqlite"


@dataclass(slots=True)
class Entry:
    id: int
    task_id: str | None
    action: str
    model: str
    prompt: str
    status: str
    created_at: float
    updated_at: float
    params: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None
    error: str | None = None
    urls: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    base_url: str | None = None
    idempotency_key: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status,
            "action": self.action,
            "model": self.model,
            "prompt": self.prompt,
            "params": self.params,
            "cost": self.cost,
            "error": self.error,
            "urls": self.urls,
            "paths": self.paths,
            "base_url": self.base_url,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class History:
    """Open-per-call access to the history file; cheap enough for a CLI, safe across processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            with db:
                yield db

    def start(
        self,
        *,
        action: str,
        model: str,
        prompt: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
        base_url: str | None,
    ) -> int:
        """Record a task about to be created; returns the row id to update later."""
        now = time.time()
        row = (idempotency_key, action, model, prompt, json.dumps(dict(params)), base_url, now, now)
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO tasks (idempotency_key, action, model, prompt, params, status,"
                " base_url, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'submitting', ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

    def update(
        self,
        row: int,
        *,
        task_id: str | None = None,
        status: str | None = None,
        cost: float | None = None,
        error: str | None = None,
        urls: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
        values: dict[str, Any] = {"updated_at": time.time()}
        if task_id is not None:
            values["task_id"] = task_id
        if status is not None:
            values["status"] = status
        if cost is not None:
            values["cost"] = cost
        if error is not None:
            values["error"] = error
        if urls is not None:
            values["urls"] = json.dumps(list(urls))
        if paths is not None:
            values["paths"] = json.dumps(list(paths))
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._db() as db:
            db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), row))

    def find(self, task_id: str) -> Entry | None:
        with self._db() as db:
            found = db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if found is None else _entry(found)

    def search(self, text: str | None = None, *, limit: int = 20) -> list[Entry]:
        """Newest first; `text` matches the prompt, task id, model or status."""
        query = "SELECT * FROM tasks"
        args: list[Any] = []
        if text:
            query += " WHERE prompt LIKE ? OR task_id LIKE ? OR model LIKE ? OR status = ?"
            pattern = f"%{text}%"
            args += [pattern, pattern, pattern, text]
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._db() as db:
            return [_entry(row) for row in db.execute(query, args).fetchall()]


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        id=row["id"],
        task_id=row["task_id"],
        action=row["action"],
        model=row["model"],
        prompt=row["prompt"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        params=json.loads(row["params"]),
        cost=row["cost"],
        error=row["error"],
        urls=json.loads(row["urls"]),
        paths=json.loads(row["paths"]),
        base_url=row["base_url"],
        idempotency_key=row["idempotency_key"],
    )
