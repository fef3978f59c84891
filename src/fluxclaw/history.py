"""A local SQLite log of every task, so a paid result is never lost and old work is searchable.

A row is written before the create request goes out (with its idempotency key, base URL and the
whole job), then updated as the task moves; an interrupted run therefore leaves a row that
`fluxclaw resume` can finish. The schema grows by numbered migrations (`_migrations`), so a file
written by an older release keeps working. It also keeps the generation times each base URL
showed, so a fresh process polls like a warm one. The API key is never stored.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxclaw import contract, errors
from fluxclaw.redaction import scrub

# Rows in these states may still become a paid image: `resume` finishes them.
UNFINISHED = frozenset(
    {
        "submitting",
        "unanswered",
        "pending",
        "processing",
        "interrupted",
        "timeout",
        "error",
        "unsaved",
    }
)


def _m001_tasks() -> list[str]:
    """The first release's table (kept as it was, so its files need nothing done)."""
    return [
        """
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
        )""",
        "CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at)",
    ]


def _m002_jobs() -> list[str]:
    """What resuming needs: the create body as sent, the job (output, format, naming), and
    whether the task lived in a one-run sandbox."""
    return [
        "ALTER TABLE tasks ADD COLUMN request TEXT",
        "ALTER TABLE tasks ADD COLUMN job TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE tasks ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS tasks_key ON tasks(idempotency_key)",
        "CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status)",
    ]


def _m003_durations() -> list[str]:
    """Generation times learned per (base URL, model, resolution)."""
    return [
        """
        CREATE TABLE IF NOT EXISTS durations (
            base_url TEXT NOT NULL,
            model TEXT NOT NULL,
            resolution TEXT NOT NULL,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (base_url, model, resolution)
        )"""
    ]


def _m004_ledger() -> list[str]:
    """The ledger: each row's API in one spelling (`contract.canonical_base`), the estimate it
    was created under (counted against caps until the task is final), the batch it belongs to
    and its identity there, and whether the row keeps only the money (`--no-history`)."""
    return [
        "ALTER TABLE tasks ADD COLUMN api TEXT",
        "ALTER TABLE tasks ADD COLUMN estimate_cents INTEGER",
        "ALTER TABLE tasks ADD COLUMN batch TEXT",
        "ALTER TABLE tasks ADD COLUMN identity TEXT",
        "ALTER TABLE tasks ADD COLUMN private INTEGER NOT NULL DEFAULT 0",
        "UPDATE tasks SET api = fluxclaw_api(base_url) WHERE base_url IS NOT NULL",
        "UPDATE tasks SET estimate_cents = fluxclaw_estimate(model, params)",
        "CREATE INDEX IF NOT EXISTS tasks_api_day ON tasks(api, created_at)",
        "CREATE INDEX IF NOT EXISTS tasks_batch ON tasks(batch, identity)",
    ]


def _m005_prices() -> list[str]:
    """The API's price schedules as last seen, per API, so a new process asks at most hourly
    (and then with the ETag)."""
    return [
        """
        CREATE TABLE IF NOT EXISTS prices (
            api TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )"""
    ]


def _m006_hidden() -> list[str]:
    """Rows a user hid (`fluxclaw history forget`): left out of lists and of a bare `resume`,
    still counted by every sum of money (caps, batch budgets and identities)."""
    return ["ALTER TABLE tasks ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0"]


MIGRATIONS: tuple[Callable[[], list[str]], ...] = (
    _m001_tasks,
    _m002_jobs,
    _m003_durations,
    _m004_ledger,
    _m005_prices,
    _m006_hidden,
)

# The shortest start of a task id or idempotency key that names a row (`History.resolve`).
MIN_PREFIX = 6
_PREFIX = re.compile(r"[0-9a-fA-F-]+")

# A row's share of a cap: its charge once known, nothing once it surely cost nothing, and its
# estimate for as long as it may still be charged (a task the client gave up on runs on) or
# when it completed without saying what it cost.
_COMMITTED_CENTS = """
    COALESCE(SUM(CASE
        WHEN cost IS NOT NULL THEN CAST(ROUND(cost * 100) AS INTEGER)
        WHEN status IN ('failed', 'rejected', 'gone') THEN 0
        ELSE COALESCE(estimate_cents, 0)
    END), 0)"""

# Checks run inside the transaction that writes a new row; given a way to sum committed cents
# (`api=`, `since=`, `batch=`), they raise to refuse the row (a cap it would pass).
Committed = Callable[..., int]
Guard = Callable[[Committed], None]


def _estimate_cents(model: str | None, params: str | None) -> int | None:
    """An older row's estimate, for the migration: its family's price at its resolution."""
    try:
        resolution = json.loads(params or "{}").get("resolution") or contract.DEFAULT_RESOLUTION
    except (ValueError, AttributeError):
        resolution = contract.DEFAULT_RESOLUTION
    for family in contract.FAMILIES:
        if model == family or f"-{family}-" in f"-{model or ''}-":
            return contract.price_cents(family, str(resolution))
    return None


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this file has not seen, in order, each once, in one write
    transaction (two processes opening an old file at once do not both migrate it)."""
    level = db.isolation_level
    db.isolation_level = None
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
            for step in MIGRATIONS:
                if step.__name__ in done:
                    continue
                for statement in step():
                    db.execute(statement)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (step.__name__, time.time()),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.isolation_level = level


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
    request: dict[str, Any] | None = None
    job: dict[str, Any] = field(default_factory=dict)
    sandbox: bool = False
    estimate_cents: int | None = None
    batch: str | None = None
    identity: str | None = None
    private: bool = False
    hidden: bool = False

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED

    def as_json(self) -> dict[str, Any]:
        """What `fluxclaw history --json` prints: everything but the row id and stored bodies."""
        return {name: getattr(self, name) for name in _JSON_FIELDS}


_JSON_FIELDS = (
    "task_id",
    "status",
    "action",
    "model",
    "prompt",
    "params",
    "cost",
    "error",
    "urls",
    "paths",
    "base_url",
    "idempotency_key",
    "sandbox",
    "created_at",
    "updated_at",
)


class History:
    """The ledger and history file, through one connection per History (opened on first use,
    shared by threads under a lock). Opening and closing per call would make SQLite checkpoint
    the WAL each time: tens of milliseconds per row, on the event loop, in a batch.

    `private=True` (`--no-history`) still writes the money of each task (key, task id, API,
    state, cost), so caps hold, but no prompt, options, body or path."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, private: bool = False
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.private = private
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds SQLite's write lock from its start, so a check and
        the row it allows are one step for every process sharing the file."""
        with self._lock, self._named():
            if self._connection is None:
                self._connection = self._open()
            db = self._connection
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()

    @staticmethod
    def _committed(
        db: sqlite3.Connection,
        *,
        api: str | None = None,
        since: float | None = None,
        batch: str | None = None,
    ) -> int:
        where, args = ["sandbox = 0"], []
        for column, value in (("api = ?", api), ("created_at >= ?", since), ("batch = ?", batch)):
            if value is not None:
                where.append(column)
                args.append(value)
        query = f"SELECT {_COMMITTED_CENTS} FROM tasks WHERE {' AND '.join(where)}"
        return int(db.execute(query, args).fetchone()[0])

    def reopen(self, row: int, guard: Guard | None) -> None:
        """A refused create about to be sent again: counted again (`submitting`), its caps
        checked in the same write, as for a new row."""
        with self._write() as db:
            if guard is not None:
                guard(lambda **scope: self._committed(db, **scope))
            db.execute(
                "UPDATE tasks SET status = 'submitting', updated_at = ? WHERE id = ?",
                (time.time(), row),
            )

    def committed_cents(
        self, *, api: str | None = None, since: float | None = None, batch: str | None = None
    ) -> int:
        """Cents charged or still chargeable by the rows in scope (a canonical API, rows since
        a moment, a batch)."""
        with self._db() as db:
            return self._committed(db, api=api, since=since, batch=batch)

    def charged_cents(self, *, batch: str) -> int:
        """Cents the server said it charged for a batch's completed tasks."""
        with self._db() as db:
            found = db.execute(
                "SELECT COALESCE(SUM(CAST(ROUND(cost * 100) AS INTEGER)), 0) FROM tasks"
                " WHERE batch = ? AND cost IS NOT NULL AND sandbox = 0",
                (batch,),
            ).fetchone()
        return int(found[0])

    def in_batch(self, batch: str, identity: str | None = None) -> list[Entry]:
        """Every row of a batch (or of one of its identities), oldest first."""
        query, args = "SELECT * FROM tasks WHERE batch = ?", [batch]
        if identity is not None:
            query, args = query + " AND identity = ?", [batch, identity]
        with self._db() as db:
            rows = db.execute(query + " ORDER BY id", args)
            return [_entry(row) for row in rows.fetchall()]

    def paid_slots(self, batch: str, *, besides: Container[str]) -> set[str]:
        """Where a batch has a paid image (its rows' slots) that no identity in `besides` asks
        for: a row there now asks for something new."""
        slots: set[str] = set()
        with self._db() as db:
            rows = db.execute(
                "SELECT identity, job FROM tasks WHERE batch = ? AND status = 'completed'",
                (batch,),
            )
            for identity, job in rows:
                if identity not in besides:
                    slot = json.loads(job or "{}").get("slot")
                    if isinstance(slot, str):
                        slots.add(slot)
        return slots

    def tag(self, row: int, *, batch: str, identity: str) -> None:
        """Claim an existing row (made before batches were ledger rows) for a batch."""
        with self._db() as db:
            db.execute(
                "UPDATE tasks SET batch = ?, identity = ? WHERE id = ?", (batch, identity, row)
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One transaction on the shared connection."""
        with self._lock, self._named():
            if self._connection is None:
                self._connection = self._open()
            with self._connection:
                yield self._connection

    @contextmanager
    def _named(self) -> Iterator[None]:
        """A history that cannot be opened, read or written (a file where its folder should
        be, a corrupt file, a full disk) is one error naming the file, never an internal one."""
        try:
            yield
        except (OSError, sqlite3.DatabaseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise errors.StateFileError(
                f"cannot use the history {self.path} ({reason}); free some space or fix the "
                "file, or set FLUXCLAW_DATA_DIR to a folder you can write."
            ) from exc

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database
        # file's own mode, so no file with prompts in it is ever readable by others.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        db.row_factory = sqlite3.Row
        # WAL with NORMAL sync: a commit survives the process being killed (what resuming
        # needs) without an fsync per row; only a power cut may lose the last commits.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.create_function("fluxclaw_api", 1, contract.canonical_base, deterministic=True)
        db.create_function("fluxclaw_estimate", 2, _estimate_cents, deterministic=True)
        migrate(db)
        _private(self.path)
        return db

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()

    def start(
        self,
        *,
        action: str,
        model: str,
        prompt: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
        base_url: str | None,
        job: Mapping[str, Any] | None = None,
        sandbox: bool = False,
        task_id: str | None = None,
        estimate_cents: int | None = None,
        batch: str | None = None,
        identity: str | None = None,
        guard: Guard | None = None,
        created_at: float | None = None,
    ) -> int:
        """Record a task about to be created; returns the row id to update later. `guard` runs
        in the same write transaction (a cap checked and the row counted at once), and may
        refuse the row by raising."""
        now = time.time()
        created = now if created_at is None else created_at
        if self.private:
            prompt, params, job = "", {}, {}
        row = (
            task_id,
            idempotency_key,
            action,
            model,
            prompt,
            json.dumps(dict(params)),
            base_url,
            None if base_url is None else contract.canonical_base(base_url),
            json.dumps(dict(job or {})),
            int(sandbox),
            estimate_cents,
            batch,
            identity,
            int(self.private),
            created,
            now,
        )
        with self._write() as db:
            if guard is not None:
                guard(lambda **scope: self._committed(db, **scope))
            cursor = db.execute(
                "INSERT INTO tasks (task_id, idempotency_key, action, model, prompt, params,"
                " status, base_url, api, job, sandbox, estimate_cents, batch, identity, private,"
                " created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'submitting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        request: Mapping[str, Any] | None = None,
        clear_error: bool = False,
    ) -> int:
        """Change a row; returns the row that holds the task from now on (another one, when
        a second row was made for a task the ledger already had)."""
        values: dict[str, Any] = {"updated_at": time.time()}
        if task_id is not None:
            values["task_id"] = task_id
        if status is not None:
            values["status"] = status
        if cost is not None:
            values["cost"] = cost
        if error is not None or clear_error:
            values["error"] = None if error is None else scrub(error)
        if self.private:  # the money only: no paths, bodies (prompts) or image URLs
            urls = paths = request = None
        if urls is not None:  # server text: a hostile server may put the key anywhere
            values["urls"] = scrub(json.dumps(list(urls)))
        if paths is not None:
            values["paths"] = json.dumps(list(paths))
        if request is not None:
            values["request"] = json.dumps(dict(request))
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._db() as db:
            try:
                db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), row))
            except sqlite3.IntegrityError:
                if task_id is None:
                    raise
                # Another row already holds this task: two doors or processes sent the same
                # key and RunAPI answered both with one task. One task is one row: this row
                # goes, the other carries on (and is what the caller updates from now on).
                held = db.execute("SELECT id FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
                db.execute("DELETE FROM tasks WHERE id = ?", (row,))
                return int(held["id"])
        return row

    def get(self, row: int) -> Entry | None:
        with self._db() as db:
            found = db.execute("SELECT * FROM tasks WHERE id = ?", (row,)).fetchone()
        return None if found is None else _entry(found)

    def find(self, ref: str) -> Entry | None:
        """The row of a task id, or of an idempotency key (a create that got no answer)."""
        ref = ref.strip()
        with self._db() as db:
            found = db.execute(
                "SELECT * FROM tasks WHERE task_id = ? OR idempotency_key = ?"
                " ORDER BY task_id IS NULL, id DESC LIMIT 1",
                (ref, ref),
            ).fetchone()
        return None if found is None else _entry(found)

    def resolve(self, ref: str) -> Entry | None:
        """The row a person means by `ref`: a whole task id or idempotency key, or a start of
        one (at least `MIN_PREFIX` hex digits, any case) that fits one row. None when no row
        has it but it is a whole task id (a task made elsewhere may still have it). Raises
        ValidationError for a start that fits several rows and NotFoundError for one that fits
        none and is no whole id: both before anything is sent anywhere."""
        ref = ref.strip()
        found = self.find(ref)
        if found is not None:
            return found
        matches = self._starting(ref) if _is_prefix(ref) else {}
        rows = len({entry.id for entry in matches.values()})
        if rows == 1:
            return self.find(next(iter(matches)))
        if matches:
            shown = [f"{full} ({entry.status})" for full, entry in list(matches.items())[:10]]
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            raise errors.ValidationError(
                f"{ref!r} starts the id or key of {rows} tasks in the history: "
                f"{', '.join(shown)}{more}; give more of it."
            )
        if _is_uuid(ref):
            return None
        too_short = bool(_PREFIX.fullmatch(ref)) and not _is_prefix(ref)
        more = f" (give at least {MIN_PREFIX} characters of one)" if too_short else ""
        raise errors.NotFoundError(
            f"no task in the history has an id or idempotency key starting with {ref!r}{more}; "
            "`fluxclaw history` lists them, and a task made elsewhere needs its whole id (a "
            "UUID)."
        )

    def _starting(self, prefix: str) -> dict[str, Entry]:
        """Each whole task id or key that starts with `prefix`, with its newest row: rows that
        share a key are one task (`find` picks among them), so they are one match."""
        pattern = prefix + "%"  # LIKE ignores ASCII case; hex digits and dashes only
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM tasks WHERE task_id LIKE ? OR idempotency_key LIKE ?"
                " ORDER BY id DESC LIMIT 100",
                (pattern, pattern),
            ).fetchall()
        matches: dict[str, Entry] = {}
        for row in rows:
            entry = _entry(row)
            for full in (entry.task_id, entry.idempotency_key):
                if full and full.lower().startswith(prefix.lower()):
                    matches.setdefault(full, entry)
        return matches

    def forget(self, row: int) -> None:
        """Hide a row from lists and from a bare `resume`. Nothing about its money changes:
        caps, batch budgets and batch identities read every row, hidden or not."""
        with self._db() as db:
            db.execute("UPDATE tasks SET hidden = 1 WHERE id = ?", (row,))

    def discard(self, row: int) -> bool:
        """Delete a row that records no money: no idempotency key (nothing of ours was ever
        created), no cost, no batch. What a task id the API does not know leaves behind, so a
        mistyped `fluxclaw wait ID` is not a task that `resume` retries for good."""
        with self._db() as db:
            cursor = db.execute(
                "DELETE FROM tasks WHERE id = ? AND idempotency_key IS NULL AND cost IS NULL"
                " AND batch IS NULL",
                (row,),
            )
        return cursor.rowcount > 0

    def counted_cents(self, row: int) -> int:
        """A row's share of every cap (the sum `committed_cents` adds up), for saying so."""
        with self._db() as db:
            found = db.execute(
                f"SELECT {_COMMITTED_CENTS} FROM tasks WHERE id = ? AND sandbox = 0", (row,)
            ).fetchone()
        return int(found[0])

    def unfinished(self, *, limit: int = 100) -> list[Entry]:
        """Rows that may still become a paid image, oldest first (hidden ones left out: a bare
        `resume` does not try them; `resume ID` still does)."""
        marks = ", ".join("?" for _ in UNFINISHED)
        with self._db() as db:
            rows = db.execute(
                f"SELECT * FROM tasks WHERE status IN ({marks}) AND hidden = 0 ORDER BY id LIMIT ?",
                (*sorted(UNFINISHED), limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def search(
        self,
        text: str | None = None,
        *,
        limit: int = 20,
        statuses: Collection[str] | None = None,
    ) -> list[Entry]:
        """Newest first, hidden rows left out; `text` matches the prompt, task id, model or
        status, `statuses` keeps only rows in those states."""
        where = ["hidden = 0"]
        args: list[Any] = []
        if text:
            where.append("(prompt LIKE ? OR task_id LIKE ? OR model LIKE ? OR status = ?)")
            pattern = f"%{text}%"
            args += [pattern, pattern, pattern, text]
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args += sorted(statuses)
        query = f"SELECT * FROM tasks WHERE {' AND '.join(where)}"
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._db() as db:
            return [_entry(row) for row in db.execute(query, args).fetchall()]

    # -- the API's prices ----------------------------------------------------------------------

    def load_prices(self, api: str) -> dict[str, Any] | None:
        with self._db() as db:
            found = db.execute("SELECT data FROM prices WHERE api = ?", (api,)).fetchone()
        try:
            data = json.loads(found["data"]) if found else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def save_prices(self, api: str, data: Mapping[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO prices (api, data, updated_at) VALUES (?, ?, ?)",
                (api, json.dumps(dict(data)), time.time()),
            )

    # -- generation times ----------------------------------------------------------------------

    def load_durations(self, base_url: str, model: str, resolution: str) -> dict[str, Any] | None:
        with self._db() as db:
            found = db.execute(
                "SELECT data FROM durations WHERE base_url = ? AND model = ? AND resolution = ?",
                (base_url, model, resolution),
            ).fetchone()
        if found is None:
            return None
        try:
            data = json.loads(found["data"])
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def save_durations(
        self, base_url: str, model: str, resolution: str, data: Mapping[str, Any]
    ) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO durations (base_url, model, resolution, data, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (base_url, model, resolution, json.dumps(dict(data)), time.time()),
            )


def _is_prefix(ref: str) -> bool:
    return bool(_PREFIX.fullmatch(ref)) and len(ref.replace("-", "")) >= MIN_PREFIX


def _is_uuid(ref: str) -> bool:
    """What the client takes as a task id (`_core.check_task_id`, which this layer is below)."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def _private(path: Path) -> None:
    """Prompts are the user's own: the file is readable by its owner only."""
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(OSError):
            os.chmod(name, 0o600)


def _entry(row: sqlite3.Row) -> Entry:
    request = row["request"]
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
        request=json.loads(request) if request else None,
        job=json.loads(row["job"] or "{}"),
        sandbox=bool(row["sandbox"]),
        estimate_cents=row["estimate_cents"],
        batch=row["batch"],
        identity=row["identity"],
        private=bool(row["private"]),
        hidden=bool(row["hidden"]),
    )
