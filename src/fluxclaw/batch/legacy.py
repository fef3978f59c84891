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
from collections.abc import Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluxclaw import contract, errors
from fluxclaw._bookkeeping import job_record
from fluxclaw.batch.rows import Row
from fluxclaw.history import Entry, History
from fluxclaw.job_types import Job
from fluxclaw.saving import Target

JOURNAL = Path(".fluxclaw") / "journal.sqlite"
OLD_HISTORY = Path(".fluxclaw") / "tasks.sqlite"
_STATES = {"done": "completed", "failed": "failed", "submitted": "unanswered", "error": "error"}


def adopt_journal(out: Path, history: History, rows: Iterable[tuple[Row, Job]]) -> None:
    """Claim in the ledger each old journal row that a planned row (its fingerprint row, and
    its job with identity, name and options) matches."""
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
        for row, job in rows:
            matches = by_print.get(row.fingerprint())
            if not matches:
                continue
            record = matches.pop(0)
            if job.identity in claimed or not record["idempotency_key"]:
                continue
            _claim(history, own, out, job, record)
    finally:
        if own is not None:
            own.close()


def _journal_rows(path: Path) -> list[dict[str, Any]]:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            found = db.execute(
                "SELECT line, fingerprint, idempotency_key, state, task_id, cost, path,"
                " updated_at FROM rows"
                " WHERE state NOT IN ('invalid', 'pending', 'over_budget') ORDER BY line"
            ).fetchall()
    except sqlite3.Error as exc:  # its rows' keys are unknown: running on could pay twice
        raise errors.StateFileError(
            f"cannot read the old batch journal {path} ({exc}); restore it from a backup, or "
            f"move it away (`mv {path} {path}.broken`) to run the batch without it (rows "
            "whose images are in the folder are still recognised)."
        ) from exc
    return [dict(row) for row in found]


def _claim(
    history: History, own: History | None, out: Path, job: Job, record: dict[str, Any]
) -> None:
    key = record["idempotency_key"]
    batch = str(out)
    assert job.identity is not None
    found = history.find(key)
    if found is not None:
        if found.batch is None:  # a CLI batch's row, already in the user's history
            history.tag(found.id, batch=batch, identity=job.identity)
        return  # else claimed already (under another identity): one key, one row
    source = own.find(key) if own is not None else None
    if source is not None:  # a library batch's row, in the batch's own old history
        _copy(history, source, batch, job.identity)
        return
    state = _STATES.get(record["state"], "unanswered")
    if state == "unanswered" and record["task_id"]:
        state = "interrupted"
    if state == "completed" and not (record["path"] and Path(record["path"]).is_file()):
        state = "unsaved"
    # Made from the planned job, so a resend asks for exactly what the row asks for.
    target = Target(out)
    entry = Entry(
        id=0,
        task_id=record["task_id"],
        action=job.action,
        model=contract.resolve_model(job.model, job.action).id,
        prompt=job.prompt,
        status=state,
        created_at=float(record["updated_at"] or 0.0),
        updated_at=float(record["updated_at"] or 0.0),
        params=job.params(),
        cost=record["cost"],
        paths=[record["path"]] if record["path"] else [],
        idempotency_key=key,
        job=job_record(replace(job, idempotency_key=key), target),
    )
    _copy(history, entry, batch, job.identity)


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
        created_at=entry.created_at or None,  # an old charge stays on its own day
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
