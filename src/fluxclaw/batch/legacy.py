"""Batches started before the ledger: their journal (`DIR/.fluxclaw/journal.sqlite`) is read
once and each of its rows that matches a row of the file is claimed in the ledger, so a batch
started by an older release finishes after the upgrade without paying again.

An old row is matched by the fingerprint that release gave it (`Row.fingerprint`) and, among
identical rows, by order. Its ledger row is the one already in the user's history (CLI
batches), else a copy of the one in the batch's own old history (`DIR/.fluxclaw/tasks.sqlite`,
library batches), else one made from the journal's key, task id, state, cost and file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from fluxclaw import contract
from fluxclaw.batch.rows import Row
from fluxclaw.history import Entry, History

JOURNAL = Path(".fluxclaw") / "journal.sqlite"
OLD_HISTORY = Path(".fluxclaw") / "tasks.sqlite"
_STATES = {"done": "completed", "failed": "failed", "submitted": "unanswered", "error": "error"}


def adopt_journal(out: Path, history: History, rows: Sequence[tuple[Row, str]]) -> None:
    path = out / JOURNAL
    if not path.is_file():
        return
    old = _journal_rows(path)
    if not old:
        return
    claimed = {entry.identity for entry in history.in_batch(str(out))}
    by_print: dict[str, list[dict[str, Any]]] = {}
    for record in old:
        by_print.setdefault(record["fingerprint"], []).append(record)
    own = History(out / OLD_HISTORY) if (out / OLD_HISTORY).is_file() else None
    try:
        for row, identity in rows:
            matches = by_print.get(row.fingerprint())
            if not matches:
                continue
            record = matches.pop(0)
            if identity in claimed or not record["idempotency_key"]:
                continue
            _claim(history, own, out, row, identity, record)
    finally:
        if own is not None:
            own.close()


def _journal_rows(path: Path) -> list[dict[str, Any]]:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            found = db.execute(
                "SELECT line, fingerprint, idempotency_key, state, task_id, cost, path FROM rows"
                " WHERE state NOT IN ('invalid', 'pending', 'over_budget') ORDER BY line"
            ).fetchall()
    except sqlite3.Error:
        return []  # unreadable: the rows' derived keys still keep RunAPI from charging twice
    return [dict(row) for row in found]


def _claim(
    history: History,
    own: History | None,
    out: Path,
    row: Row,
    identity: str,
    record: dict[str, Any],
) -> None:
    key = record["idempotency_key"]
    batch = str(out)
    found = history.find(key)
    if found is not None and found.batch is None:
        history.tag(found.id, batch=batch, identity=identity)
        return
    source = own.find(key) if own is not None else None
    if source is not None:
        _copy(history, source, batch, identity)
        return
    state = _STATES.get(record["state"], "unanswered")
    if state == "unanswered" and record["task_id"]:
        state = "interrupted"
    if state == "completed" and not (record["path"] and Path(record["path"]).is_file()):
        state = "unsaved"
    action: contract.Action = "remix_image" if row.images else "text_to_image"
    try:
        model = contract.resolve_model(row.model or contract.DEFAULT_FAMILY, action).id
    except ValueError:
        model = row.model or contract.DEFAULT_FAMILY
    entry = Entry(
        id=0,
        task_id=record["task_id"],
        action=action,
        model=model,
        prompt=row.prompt,
        status=state,
        created_at=0.0,
        updated_at=0.0,
        params={},
        cost=record["cost"],
        paths=[record["path"]] if record["path"] else [],
        idempotency_key=key,
        job={"target": {"folder": str(out)}},
    )
    _copy(history, entry, batch, identity)


def _copy(history: History, entry: Entry, batch: str, identity: str) -> None:
    row = history.start(
        action=entry.action,
        model=entry.model,
        prompt=entry.prompt,
        params=entry.params,
        idempotency_key=entry.idempotency_key,
        base_url=entry.base_url,
        job=entry.job,
        task_id=entry.task_id,
        batch=batch,
        identity=identity,
    )
    history.update(
        row,
        status=entry.status,
        cost=entry.cost,
        urls=entry.urls or None,
        paths=entry.paths or None,
        request=entry.request,
        error=entry.error,
    )
