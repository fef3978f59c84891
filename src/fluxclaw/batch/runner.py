"""Running a batch: every row through the job engine, as many at once as allowed.

The runner adds only what a batch needs on top of `fluxclaw.jobs`: its plan (`batch.plan`:
identities, keys, names, what is done), the pace (rows in flight, slowed by rate limits), local
sources uploaded once for all the rows that share them, and the manifest and gallery at the end.
Validation, the ledger rows, the budget (checked in the ledger write of each task), retries,
waiting, saving and resuming are the engine's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxclaw import contract, errors, jobs, saving
from fluxclaw.batch.gallery import thumbnail, write_gallery
from fluxclaw.batch.pace import Pace
from fluxclaw.batch.plan import Defaults, Plan, Planned, plan_batch
from fluxclaw.batch.rows import BadFile, BadRow, Row
from fluxclaw.history import History

if TYPE_CHECKING:
    from fluxclaw._core import HintSource
    from fluxclaw.client import AsyncClient
    from fluxclaw.models import TaskStatus


log = logging.getLogger("fluxclaw.batch")

# A row that meets rate limits past the client's own retries is tried again by the engine,
# with backoff, for as long as a row may take.
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
    # rows that failed in this run, (line, message), in the order they failed; a display says
    # each once (it keeps its own count), so a log shows every failure as it happens
    failures: list[tuple[int, str]] = field(default_factory=list)

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
    counts: dict[str, int]  # manifest statuses: done, failed, error, over_budget, invalid
    bad: list[BadRow]  # the first bad rows (`bad_count` in all; the manifest lists each)
    spent_usd: float  # what the ledger says was charged for this batch, in all its runs
    plan: Plan | None = None
    charged_now_usd: float = 0.0  # of which charged during this run
    running_usd: float = 0.0  # estimates of the batch's tasks that may still be charged
    bad_count: int = 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The manifest's lines (read from it: a batch's rows are not kept in memory)."""
        with self.manifest.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def run_batch(
    client: AsyncClient,
    rows: Iterable[Row | BadRow],
    out_dir: str | os.PathLike[str],
    *,
    bad_rows: Iterable[BadRow] = (),
    defaults: Defaults | None = None,
    sources_from: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    budget_usd: float | None = None,
    retry_failed: bool = False,
    remake: bool = False,
    history: History | None = None,
    receiver: HintSource | None = None,
    callback_url: str | None = None,
    timeout: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    plan: Plan | None = None,
) -> BatchResult:
    """Run (or resume) a batch into `out_dir`; the same call again finishes what is left.

    Every row is a row of the ledger (`history`, the user's own by default), so another door
    or process re-running the batch finishes it without paying twice. Rows that ask for
    something new where an image was already paid for (`changed`) are refused with a
    `ValidationError` before anything is sent unless `remake` (the CLI's --yes); a re-made
    image never replaces the paid one. `budget_usd` caps every task of the batch, in all its
    runs, counting each at its estimate until it is final. `rows` is read more than once
    (plan, run, manifest): a list, or `RowFile(path)` for a file of any size."""
    out = Path(out_dir).expanduser().resolve()
    saving.check_target(str(out) + "/", None)  # a folder we can write into, checked once
    out.mkdir(parents=True, exist_ok=True)
    history = history or History()
    if plan is None:
        await jobs.arefresh_prices(client, history)  # the plan's price, as the API states it
        plan = plan_batch(
            client,
            rows,
            out,
            history,
            bad_rows=bad_rows,
            defaults=defaults or Defaults(),
            sources_from=Path(sources_from) if sources_from else None,
            retry_failed=retry_failed,
            callback_url=callback_url,
        )
    if plan.counts.get("changed") and not remake:
        raise errors.ValidationError(
            f"{plan.counts['changed']} row(s) ask for something new where an image was already "
            f"paid for ({plan.describe()}); re-make them with --yes (library: remake=True), "
            "the paid images stay beside the new ones, or undo the change."
        )
    _remove_partials(out)
    charged_before = history.charged_cents(batch=plan.batch)
    progress = Progress(total=plan.runnable)
    progress.spent_usd = charged_before / 100
    pace = Pace(concurrency)
    uploads = Uploads()
    outcome: dict[str, tuple[str, str]] = {}  # identity -> what this run met (status, error)

    def report() -> None:
        if on_progress is not None:
            on_progress(progress)

    async def one(planned: Planned) -> None:
        started = time.monotonic()
        slot = Slot(pace, progress)
        job, entry = planned.job, planned.entry
        if callback_url is not None:  # known once the receiver listens, after the plan
            job = replace(job, callback_url=callback_url)
        identity = job.identity or ""

        async def ended(status: TaskStatus) -> None:
            """The slot is the server's: the next row starts while this one downloads."""
            if status.status in contract.TERMINAL_STATUSES:
                await slot.free(succeeded=status.status == "completed")

        async def paced(seconds: float) -> None:
            """A rate limit outlasted the client's retries: out of the pace while waiting, so
            a slowdown really lowers the load; the engine then tries again with the same key."""
            pace.slow_down()
            await slot.free(succeeded=False)
            await asyncio.sleep(seconds)
            await slot.take()

        patient: dict[str, Any] = {
            "patience": timeout or DEFAULT_ROW_TIMEOUT,
            "on_rate_limit": paced,
            "on_update": ended,
            "timeout": timeout,
            "history": history,
        }
        try:
            if entry is not None:  # started before: finished by its task id, else its key,
                # saved as the row asks now (a format asked since is a re-save, not a charge)
                done = await jobs.aresume(client, entry, format=job.format, **patient)
            else:
                done = await _start(client, job, uploads, receiver, budget_usd, patient)
        except errors.BudgetExceededError as error:
            outcome[identity] = ("over_budget", error.message)
            progress.skipped += 1
        except errors.FluxclawError as error:
            # The ledger row says where it stands: a failed task stays failed (--retry-failed
            # sends it again); anything else is finished by its task id or key next run.
            outcome[identity] = ("error", error.message)
            progress.failed += 1
            progress.failures.append((planned.row.line, error.message))
        else:
            if done.paths:  # the gallery's thumbnail, made while other rows wait
                await asyncio.to_thread(thumbnail, out, Path(done.paths[0]))
            progress.spent_usd += done.cost_usd or 0.0
            progress.done += 1
            progress.durations.append(time.monotonic() - started)
        finally:
            await slot.free(succeeded=False)
            report()

    running: set[asyncio.Task[None]] = set()  # only rows in flight are held, never all
    report()
    try:
        for planned in plan.each(history):
            if isinstance(planned, BadRow):
                continue
            if planned.kind == "done" or (planned.kind == "failed" and planned.entry is not None):
                progress.done += planned.kind == "done"
                progress.failed += planned.kind == "failed"
                continue
            await pace.acquire()
            progress.in_flight += 1
            report()
            task = asyncio.create_task(one(planned))
            running.add(task)
            task.add_done_callback(running.discard)
    except (OSError, BadFile) as error:  # moved or cut short under the run: no more rows start
        log.warning("batch file not readable again (%s); no further rows start", error)
    while running:
        await asyncio.gather(*list(running))
    return _finish(out, history, plan, outcome, charged_before)


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
    """Each local source uploaded once for all the rows that use it. Uploaded URLs last an
    hour, so one is used for 50 minutes and then the file is uploaded again (a batch may run
    for hours)."""

    LIFETIME = 50 * 60.0

    def __init__(self) -> None:
        self.urls: dict[str, tuple[str, float]] = {}
        self.lock = asyncio.Lock()

    async def url(self, client: AsyncClient, source: str) -> str:
        async with self.lock:
            found = self.urls.get(source)
            if found is None or time.monotonic() - found[1] > self.LIFETIME:
                found = (await client.upload(source), time.monotonic())
                self.urls[source] = found
            return found[0]


async def _start(
    client: AsyncClient,
    job: jobs.Job,
    uploads: Uploads,
    receiver: HintSource | None,
    budget: float | None,
    options: dict[str, Any],
) -> jobs.JobResult:
    """A new row: its local sources uploaded (once for all rows that share them), then the
    engine's run, under the batch's budget."""
    sources = []
    for source in job.sources:
        if contract.is_http_url(source):
            sources.append(source)
            continue
        sources.append(await uploads.url(client, source))
    job = replace(job, sources=tuple(sources))
    return await jobs.arun(client, job, receiver=receiver, budget=budget, **options)


def _remove_partials(out: Path) -> None:
    """Temporary files of writes a crash cut short (`saving.atomic_write` names them so)."""
    for partial in out.glob(".*.part"):
        partial.unlink(missing_ok=True)


def _status(entry: Any, met: tuple[str, str] | None) -> tuple[str, str | None]:
    """A manifest status: the ledger's word, unless this run was refused before a row."""
    if entry is None:
        return met or ("error", "not started")
    if entry.status == "completed" and entry.paths:
        return "done", None
    if entry.status == "failed":
        return "failed", entry.error
    if met is not None and met[0] == "over_budget":
        return met
    return "error", entry.error or (met[1] if met else None)


def _finish(
    out: Path,
    history: History,
    plan: Plan,
    outcome: dict[str, tuple[str, str]],
    charged_before: int,
) -> BatchResult:
    """manifest.jsonl from the ledger (one line per row of the file, in file order, pointing
    at its newest image), written atomically a line at a time; then the gallery from it."""
    counts: dict[str, int] = {}
    running = 0
    manifest = out / "manifest.jsonl"
    try:
        with saving.atomic_writer(manifest) as handle:
            for planned in plan.each(history):
                line = _line(history, plan.batch, planned, outcome)
                counts[line["status"]] = counts.get(line["status"], 0) + 1
                running += line.pop("_running", 0)
                handle.write(_json_line(line))
    except (OSError, BadFile) as error:  # the file moved or changed under the run
        log.warning("batch file not readable again (%s); manifest from the ledger", error)
        counts, running = _ledger_manifest(history, plan, manifest)
    write_gallery(out, _manifest_lines(manifest))
    charged = history.charged_cents(batch=plan.batch)
    return BatchResult(
        manifest,
        counts,
        plan.bad,
        charged / 100,
        plan,
        (charged - charged_before) / 100,
        running / 100,
        plan.bad_count,
    )


def _line(
    history: History,
    batch: str,
    planned: Planned | BadRow,
    outcome: dict[str, tuple[str, str]],
) -> dict[str, Any]:
    if isinstance(planned, BadRow):
        return {"line": planned.line, "status": "invalid", "error": planned.error}
    identity = planned.job.identity or ""
    found = history.in_batch(batch, identity)
    entry = found[-1] if found else None
    status, error = _status(entry, outcome.get(identity))
    line: dict[str, Any] = {
        "line": planned.row.line,
        "status": status,
        "identity": identity,
        "task_id": entry.task_id if entry else None,
        "cost_usd": entry.cost if entry else None,
        "path": entry.paths[-1] if entry and entry.paths else None,
        "error": error,
        "prompt": planned.row.prompt,
        "model": planned.job.model,
        "aspect_ratio": planned.row.aspect_ratio,
        "resolution": planned.row.resolution,
    }
    if entry is not None and entry.cost is None and status == "error":
        line["_running"] = entry.estimate_cents or 0
    return line


def _ledger_manifest(history: History, plan: Plan, manifest: Path) -> tuple[dict[str, int], int]:
    """The manifest when the batch file cannot be read again: a line per planned row, from its
    newest ledger row (what was paid and saved is still listed; a row never started says so)."""
    latest = {entry.identity: entry for entry in history.in_batch(plan.batch)}
    counts: dict[str, int] = {}
    running = 0
    with saving.atomic_writer(manifest) as handle:
        for identity in plan.decisions:
            entry = latest.get(identity)
            status, error = _status(entry, None)
            if entry is None:
                error = "not started: the batch file could not be read again; run it again"
            counts[status] = counts.get(status, 0) + 1
            if entry is not None and entry.cost is None and status == "error":
                running += entry.estimate_cents or 0
            line: dict[str, Any] = {
                "line": None,
                "status": status,
                "identity": identity,
                "error": error,
            }
            if entry is not None:
                line |= {
                    "task_id": entry.task_id,
                    "cost_usd": entry.cost,
                    "path": entry.paths[-1] if entry.paths else None,
                    "prompt": entry.prompt,
                    "model": entry.model,
                    "aspect_ratio": entry.params.get("aspect_ratio"),
                    "resolution": entry.params.get("resolution"),
                }
            handle.write(_json_line(line))
    return counts, running


def _json_line(line: dict[str, Any]) -> bytes:
    """One manifest line; U+2028 and U+2029 escaped, as readers that split on them expect."""
    text = json.dumps(line, ensure_ascii=False)
    return (text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n").encode()


def _manifest_lines(manifest: Path) -> Iterator[dict[str, Any]]:
    with manifest.open(encoding="utf-8") as lines:
        for text in lines:
            if text.strip():
                yield json.loads(text)
