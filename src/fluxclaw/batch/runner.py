"""Running a batch: every row through the job engine, as many at once as allowed, on a budget.

The runner adds only what a batch needs on top of `fluxclaw.jobs`: a journal (state and key per
row, written before each create), a budget that counts what is in flight, local sources uploaded
once for all the rows that share them, and the manifest and gallery at the end. Validation,
recording, retries, waiting, saving and resuming are the engine's.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxclaw import contract, errors, jobs, saving
from fluxclaw.batch import journal as states
from fluxclaw.batch.gallery import thumbnail, write_gallery
from fluxclaw.batch.journal import Journal
from fluxclaw.batch.pace import Pace
from fluxclaw.batch.rows import BadRow, Row
from fluxclaw.files import EXTENSIONS, SUFFIX, ImageFormat
from fluxclaw.history import History

if TYPE_CHECKING:
    from fluxclaw._core import HintSource, OnUpdate
    from fluxclaw.client import AsyncClient
    from fluxclaw.models import TaskStatus


# A row that meets rate limits past the client's own retries is tried again, with backoff,
# for as long as a row may take.
DEFAULT_ROW_TIMEOUT = 1800.0


@dataclass
class Progress:
    """What a progress display shows; `on_progress` gets it after every change."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0
    spent_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped

    def eta(self, concurrency: int) -> float | None:
        """Seconds left, from the rows finished so far in this run."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return mean * self.remaining / max(1, concurrency)


@dataclass(frozen=True)
class BatchResult:
    manifest: Path
    rows: list[dict[str, Any]]
    bad: list[BadRow]
    spent_usd: float

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts


@dataclass(frozen=True)
class Defaults:
    model: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    format: ImageFormat | None = None


async def run_batch(
    client: AsyncClient,
    rows: Sequence[Row],
    out_dir: str | os.PathLike[str],
    *,
    bad_rows: Sequence[BadRow] = (),
    defaults: Defaults = Defaults(),
    sources_from: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    budget_usd: float | None = None,
    retry_failed: bool = False,
    history: History | None = None,
    receiver: HintSource | None = None,
    callback_url: str | None = None,
    timeout: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> BatchResult:
    """Run (or resume) a batch into `out_dir`; the same call again finishes what is left."""
    out = Path(out_dir).expanduser().resolve()
    saving.check_target(out, None)  # a folder we can write into, checked once for every row
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out)
    history = history or History(out / ".fluxclaw" / "tasks.sqlite")
    _remove_partials(out)
    base = Path(sources_from or Path.cwd())
    known = journal.entries()
    bad = list(bad_rows)
    planned: list[tuple[Row, jobs.Job, str]] = []
    names: dict[str, int] = {}
    for row in rows:
        row = _with_defaults(row, defaults, base)
        fingerprint = row.fingerprint()
        entry = known.get(row.line)
        if entry is not None and (entry.fingerprint != fingerprint or not entry.idempotency_key):
            entry = None  # the row changed: a new request, with a new key
        key = entry.idempotency_key if entry else journal.key_for(row.line, fingerprint)
        state = entry.state if entry else states.PENDING
        if state == states.FAILED and retry_failed:
            # The old key would replay the failed task: a retry is a new create, new key.
            key, state = journal.key_for(row.line, f"{key}:retry"), states.PENDING
        job = _job(row, out, key, callback_url)
        try:
            _check(client, job, names, row)
        except errors.FluxclawError as error:
            bad.append(BadRow(row.line, error.message))
            continue
        if entry is None or state == states.PENDING:
            journal.put(row.line, fingerprint, key, states.PENDING, **_summary(row))
        planned.append((row, job, state))
    bad.sort(key=lambda item: item.line)
    for item in bad:
        journal.put(item.line, "", "", states.INVALID, error=item.error)

    progress = Progress(total=len(planned))
    spent_cents = sum(round((e.cost or 0) * 100) for e in known.values())
    progress.spent_usd = spent_cents / 100
    budget_cents = None if budget_usd is None else round(budget_usd * 100)
    reserved = 0
    pace = Pace(concurrency)
    uploads = Uploads()

    def report() -> None:
        if on_progress is not None:
            on_progress(progress)

    async def one(row: Row, job: jobs.Job, state: str, estimate: int) -> None:
        nonlocal spent_cents, reserved
        started = time.monotonic()
        fingerprint = row.fingerprint()
        slot = Slot(pace, progress)

        async def ended(status: TaskStatus) -> None:
            """The slot is the server's: the next row starts while this one downloads."""
            if status.status in contract.TERMINAL_STATUSES:
                await slot.free(succeeded=status.status == "completed")

        try:
            attempt = 0
            while True:
                try:
                    done = await _finish_or_start(
                        client, job, state, history, timeout, receiver, uploads, ended
                    )
                    break
                except errors.RateLimitError as error:
                    if time.monotonic() - started > (timeout or DEFAULT_ROW_TIMEOUT):
                        raise
                    # Out of the pace while waiting, so a slowdown really lowers the load; then
                    # the same key again: nothing is created or paid twice.
                    pace.slow_down()
                    await slot.free(succeeded=False)
                    await asyncio.sleep(Pace.backoff(attempt, error.retry_after))
                    await slot.take()
                    attempt += 1
                    state = states.SUBMITTED
        except errors.FluxclawError as error:
            # A failed task stays failed (--retry-failed sends it again); any other error is
            # finished by its key on the next run.
            failed = isinstance(error, errors.TaskFailedError)
            journal.put(
                row.line,
                fingerprint,
                job.idempotency_key,
                states.FAILED if failed else states.ERROR,
                task_id=error.task_id,
                error=error.message,
                **_summary(row),
            )
            progress.failed += 1
        else:
            cost = done.cost_usd or 0.0
            path = str(done.paths[0]) if done.paths else None
            journal.put(
                row.line,
                fingerprint,
                job.idempotency_key,
                states.DONE,
                task_id=done.task_id,
                cost=cost,
                path=path,
                error=None,
                **_summary(row),
            )
            if path is not None:  # the gallery's thumbnail, made while other rows wait
                await asyncio.to_thread(thumbnail, out, Path(path))
            spent_cents += round(cost * 100)
            progress.done += 1
            progress.durations.append(time.monotonic() - started)
        finally:
            reserved -= estimate
            progress.spent_usd = spent_cents / 100
            await slot.free(succeeded=False)
            report()

    tasks: list[asyncio.Task[None]] = []
    report()
    for row, job, state in planned:
        if state == states.DONE or (state == states.FAILED and not retry_failed):
            progress.done += state == states.DONE
            progress.failed += state == states.FAILED
            continue
        await pace.acquire()
        estimate = _estimate(client, job)
        if budget_cents is not None and (
            estimate is None or spent_cents + reserved + estimate > budget_cents
        ):
            await pace.release(succeeded=False)
            why = (
                f"{job.model} has no known price, so --budget cannot be kept"
                if estimate is None
                else f"would pass the budget of ${budget_cents / 100:.2f}"
            )
            journal.put(
                row.line,
                row.fingerprint(),
                job.idempotency_key,
                states.OVER_BUDGET,
                error=why,
                **_summary(row),
            )
            progress.skipped += 1
            report()
            continue
        reserved += estimate or 0
        # The key is on disk before the create can go out: a crash from here on is resumable.
        if state != states.SUBMITTED:
            journal.put(
                row.line, row.fingerprint(), job.idempotency_key, states.SUBMITTED, **_summary(row)
            )
        progress.in_flight += 1
        report()
        tasks.append(asyncio.create_task(one(row, job, state, estimate or 0)))
    if tasks:
        await asyncio.gather(*tasks)
    try:
        return _finish(out, journal, bad, spent_cents)
    finally:
        journal.close()


class Slot:
    """One row's place in the pace, given back exactly once (or taken again after a 429)."""

    def __init__(self, pace: Pace, progress: Progress) -> None:
        self.pace = pace
        self.progress = progress
        self.held = True

    async def free(self, *, succeeded: bool) -> None:
        if self.held:
            self.held = False
            self.progress.in_flight -= 1
            await self.pace.release(succeeded=succeeded)

    async def take(self) -> None:
        await self.pace.acquire()
        self.held = True
        self.progress.in_flight += 1


class Uploads:
    """Each local source uploaded once for all the rows that use it (URLs last an hour)."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.lock = asyncio.Lock()

    async def url(self, client: AsyncClient, source: str) -> str:
        async with self.lock:
            if source not in self.urls:
                self.urls[source] = await client.upload(source)
            return self.urls[source]


async def _finish_or_start(
    client: AsyncClient,
    job: jobs.Job,
    state: str,
    history: History,
    timeout: float | None,
    receiver: HintSource | None,
    uploads: Uploads,
    on_update: OnUpdate,
) -> jobs.JobResult:
    """A row that may have been sent is finished by its key; a new one uploads and starts."""
    if state in (states.SUBMITTED, states.ERROR):
        entry = history.find(job.idempotency_key)
        if entry is not None:
            return await jobs.aresume(
                client, entry, history=history, timeout=timeout, on_update=on_update
            )
    sources = []
    for source in job.sources:
        if contract.is_http_url(source):
            sources.append(source)
            continue
        sources.append(await uploads.url(client, source))
    job = replace(job, sources=tuple(sources))
    return await jobs.arun(
        client, job, history=history, timeout=timeout, receiver=receiver, on_update=on_update
    )


def _with_defaults(row: Row, defaults: Defaults, base: Path) -> Row:
    images = tuple(
        source if contract.is_http_url(source) else str((base / source).expanduser().resolve())
        for source in row.images
    )
    return replace(
        row,
        model=row.model or defaults.model,
        aspect_ratio=row.aspect_ratio or defaults.aspect_ratio,
        resolution=row.resolution or defaults.resolution,
        format=row.format or defaults.format,
        images=images,
    )


def _job(row: Row, out: Path, key: str, callback_url: str | None) -> jobs.Job:
    fmt: ImageFormat = row.format or "png"
    stem = row.name or f"{row.line:05d}-{saving.slug(row.prompt, 5)}"
    name = stem if Path(stem).suffix.lower() in EXTENSIONS else stem + SUFFIX[fmt]
    return jobs.Job(
        action="remix_image" if row.images else "text_to_image",
        prompt=row.prompt,
        sources=row.images,
        model=row.model or contract.DEFAULT_FAMILY,
        aspect_ratio=row.aspect_ratio,
        resolution=row.resolution,
        callback_url=callback_url,
        output=str(out / name),
        format=row.format,
        overwrite=True,  # the batch owns its file names; a re-run rewrites the same image
        idempotency_key=key,
    )


def _check(client: AsyncClient, job: jobs.Job, names: dict[str, int], row: Row) -> None:
    """The library's own checks, with no I/O but reading local files; and one name per row.
    (The output folder itself is checked once, by `run_batch`.)"""
    client.draft(job.action, job.prompt, job.sources, job.options())
    assert job.output is not None
    name = Path(job.output).name.lower()
    if name in names:
        message = f"name {Path(job.output).name} is already used by line {names[name]}"
        raise errors.ValidationError(message)
    names[name] = row.line


def _estimate(client: AsyncClient, job: jobs.Job) -> int | None:
    resolution = job.resolution or contract.DEFAULT_RESOLUTION
    return client.estimate_cost(job.model, resolution, action=job.action).total_cents


def _summary(row: Row) -> dict[str, Any]:
    return {
        "prompt": row.prompt,
        "model": row.model or contract.DEFAULT_FAMILY,
        "aspect_ratio": row.aspect_ratio,
        "resolution": row.resolution,
    }


def _remove_partials(out: Path) -> None:
    """Temporary files of writes a crash cut short (`saving.atomic_write` names them so)."""
    for partial in out.glob(".*.part"):
        partial.unlink(missing_ok=True)


def _finish(out: Path, journal: Journal, bad: list[BadRow], spent_cents: int) -> BatchResult:
    """manifest.jsonl from the journal (one line per row, atomically), then the gallery."""
    lines = []
    for entry in journal.entries().values():
        lines.append(
            {
                "line": entry.line,
                "status": entry.state,
                "task_id": entry.task_id,
                "cost_usd": entry.cost,
                "path": entry.path,
                "error": entry.error,
                "prompt": entry.prompt,
                "model": entry.model,
                "aspect_ratio": entry.aspect_ratio,
                "resolution": entry.resolution,
            }
        )
    manifest = out / "manifest.jsonl"
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    saving.atomic_write(manifest, text.encode())
    write_gallery(out, lines)
    return BatchResult(manifest, lines, bad, spent_cents / 100)
