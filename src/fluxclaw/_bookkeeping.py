"""A job's history row: what is recorded at each step, so any stop leaves it resumable.

Every method does nothing without a history (library users opt in). It also carries the
generation times a client learned to the next process (`durations`, `learned`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxclaw import contract, errors, saving
from fluxclaw._core import OnUpdate
from fluxclaw.history import Guard, History
from fluxclaw.models import TaskRequest, TaskStatus

log = logging.getLogger("fluxclaw.history")

if TYPE_CHECKING:
    from fluxclaw.client import _Base as ClientBase
    from fluxclaw.job_types import Job


def job_record(job: Job, target: saving.Target) -> dict[str, Any]:
    """What a ledger row keeps of its job, so that resuming it sends and saves the same."""
    sources = [
        s if contract.is_http_url(s) else str(Path(s).expanduser().resolve()) for s in job.sources
    ]
    return {
        "model": job.model,
        "aspect_ratio": job.aspect_ratio,
        "resolution": job.resolution,
        "safety_checker": job.safety_checker,
        "callback_url": job.callback_url,
        "sources": sources,
        "target": target.to_json(),
        "created_at": job.created_at,
        "stem": job.stem,
        "slot": job.slot,
    }


class Book:
    """One job's history row; every method does nothing without a history."""

    def __init__(
        self,
        history: History | None,
        row: int | None = None,
        task_id: str | None = None,
        status: str = "submitting",
    ) -> None:
        self.history = history
        self.row = row
        self.task_id = task_id
        self.status = status

    def start(
        self,
        job: Job,
        target: saving.Target,
        base_url: str,
        sandbox: bool,
        estimate_cents: int | None = None,
        guard: Guard | None = None,
    ) -> None:
        """The ledger row, written before the create; `guard` may refuse it (a cap)."""
        if self.history is None:
            return
        record = job_record(job, target)
        model = contract.resolve_model(job.model, job.action)
        self.row = self.history.start(
            action=job.action,
            model=model.id,
            prompt=job.prompt,
            params=job.params(),
            idempotency_key=job.idempotency_key,
            base_url=base_url,
            job=record,
            sandbox=sandbox,
            estimate_cents=estimate_cents,
            batch=job.batch,
            identity=job.identity,
            guard=guard,
        )

    def update(self, **values: Any) -> None:
        self.task_id = values.get("task_id") or self.task_id
        self.status = values.get("status") or self.status
        if self.history is not None and self.row is not None:
            try:
                self.row = self.history.update(self.row, **values)
            except errors.StateFileError as error:
                if self.task_id:  # the task exists and may be paid: say how to finish it
                    error.task_id = self.task_id
                    error.hint = (
                        f"The task was made: finish it with `fluxclaw resume {self.task_id}` "
                        "once the history can be written again."
                    )
                raise

    def watching(self, on_update: OnUpdate | None) -> OnUpdate:
        """The caller's `on_update`, after recording the task id the moment it is known (the
        first update comes from inside the create), so an interrupt right after cannot lose it."""

        def seen(status: TaskStatus) -> Any:
            if self.task_id is None:
                self.update(task_id=status.task_id, status=status.status)
            return on_update(status) if on_update is not None else None

        return seen

    def abandoned(self) -> None:
        """The flow was stopped wherever it was (Ctrl-C, a cancelled task): leave the row
        resumable. A create with no task id yet is resent by its key; a task is waited for."""
        if self.status in ("submitting", "unanswered"):
            self.update(status="interrupted" if self.task_id else "unanswered")
        elif self.status in contract.STATUSES and self.status not in contract.TERMINAL_STATUSES:
            self.update(status="interrupted")

    def durations(self, client: ClientBase, request: TaskRequest | None) -> None:
        """Start the client from what earlier processes learned about this server's times."""
        if self.history is None or request is None:
            return
        found = self.history.load_durations(client.base_url, request.model, request.resolution)
        if found:
            client.durations.restore((request.model, request.resolution), found)

    def learned(self, client: ClientBase, request: TaskRequest | None) -> None:
        if self.history is None or request is None:
            return
        key = (request.model, request.resolution)
        snapshot = client.durations.snapshot(key)
        if snapshot["records"] or snapshot["first_polls"]:
            try:
                self.history.save_durations(client.base_url, *key, snapshot)
            except errors.StateFileError as error:  # a hint for the next wait: never worth a job
                log.debug("durations not kept: %s", error.message)
