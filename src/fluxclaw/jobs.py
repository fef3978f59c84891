"""The job engine: one generation or remix from request to saved files, its promises kept once.

check the request and the output target -> record a history row (idempotency key, base URL and
the whole job) -> upload local sources -> record the create body -> submit (retried with the
key) -> wait -> save -> record. `resume` finishes any row from its task id or, when the create
got no answer, from its idempotency key (RunAPI replays it: no second charge). The CLI, the MCP
server and the batch runner are thin doors on `run`/`arun` and `resume`/`aresume`.

The workflow is written once, as a flow of I/O steps composed from the client's own flows
(`fluxclaw._flows`); a `Client` or an `AsyncClient` runs it, so sync and async are one code.
The history is opt-in for library users: without one, nothing is recorded anywhere.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from fluxclaw import _flows as flows
from fluxclaw import contract, errors, files, retries, saving, spending
from fluxclaw._bookkeeping import Book
from fluxclaw._core import HintSource, OnUpdate
from fluxclaw.deadline import Deadline
from fluxclaw.history import Entry, History
from fluxclaw.job_types import Job, JobResult
from fluxclaw.models import Task, TaskRequest, TaskStatus
from fluxclaw.pricing import PriceList

if TYPE_CHECKING:
    from fluxclaw.client import AsyncClient, Client, _Base

Flow = flows.Flow["JobResult"]
# Seconds a save gets even when the wait used up the job's timeout.
SAVE_FLOOR = 3.0


def _create_failed(error: errors.FluxclawError, key: str, book: Book) -> None:
    """Record a failed create, and give the error its resume hint when a task may exist."""
    if isinstance(error, errors.StateFileError):
        return  # the ledger failed, not the create: `Book` named the task, if there is one
    # The error class says whether the server refused it; an unclear earlier try overrides.
    if error.refused and not error.maybe_sent:
        book.update(status="rejected", error=error.message)
        return
    book.update(status="unanswered", error=error.message)
    error.hint = (
        "The task may exist and be charged: finish it without paying twice with "
        f"`fluxclaw resume {key}` (it resends the same create with the same idempotency key)."
    )


def _submitted(
    client: _Base,
    request: TaskRequest,
    key: str,
    book: Book,
    on_update: OnUpdate | None,
    deadline: Deadline,
) -> flows.Flow[Task]:
    """Record the exact body, then send it with its key; shared by new and resumed jobs."""
    book.update(request=dict(request.body))
    if deadline.passed():  # pricing or uploads used the job's time: say so, send nothing
        message = "the job's timeout passed before its create could be sent (nothing was sent)"
        book.update(status="rejected", error=message)
        raise errors.RequestTimeoutError(message)
    try:
        task = yield from flows.create(
            client.core, request, {"idempotency_key": key}, book.watching(on_update), deadline
        )
    except errors.FluxclawError as error:
        _create_failed(error, key, book)  # recorded, and the hint set: the same error goes on
        raise
    book.update(task_id=task.id, status=task.status)
    return task


def _create_flow(
    client: _Base,
    job: Job,
    book: Book,
    *,
    sandbox: bool,
    wait: bool,
    timeout: float | None,
    on_update: OnUpdate | None,
    receiver: HintSource | None = None,
    budget: float | None = None,
) -> Flow:
    deadline = _deadline(client, timeout)
    draft = client.draft(job.action, job.prompt, job.sources, job.options())
    target = saving.check_target(job.output, job.format, overwrite=job.overwrite)
    # The caps are checked in the same ledger write that counts this task (one step for
    # every door and process), at the API's own price when it tells it; a one-run sandbox
    # costs nothing and is under none.
    guard = None
    if not sandbox and book.history is not None:
        yield from _priced(client, book.history)
    resolution = job.resolution or contract.DEFAULT_RESOLUTION
    cost = client.estimate_cost(job.model, resolution, action=job.action)
    if not sandbox and book.history is not None:
        guard = spending.guard(client.base_url, cost, batch=job.batch, batch_budget_usd=budget)
    book.start(job, target, client.base_url, sandbox, cost.total_cents, guard)
    try:
        request = yield from flows.prepare(client.core, draft)
    except errors.FluxclawError as error:
        book.update(status="rejected", error=error.message)  # uploads only: nothing created
        raise
    book.durations(client, request)
    task = yield from _submitted(client, request, job.idempotency_key, book, on_update, deadline)
    if not wait:
        return JobResult(task.id, task.status, row=book.row, idempotency_key=job.idempotency_key)
    return (yield from _finish_flow(client, task, job, target, book, deadline, on_update, receiver))


def _priced(client: _Base, history: History) -> flows.Flow[None]:
    """The API's price schedules for estimates: as the ledger last saw them for this API, asked
    again (with the ETag) once they are an hour old."""
    api = contract.canonical_base(client.base_url)
    known = client.core.price_list
    if not known.fresh():
        stored = history.load_prices(api)
        restored = PriceList.from_json(stored) if stored else None
        if restored is not None and restored.checked_at > known.checked_at:
            client.core.price_list = known = restored
    checked = known.checked_at
    yield from flows.refresh_prices(client.core)
    if known.checked_at != checked and known.prices:
        history.save_prices(api, known.to_json())


def refresh_prices(client: Client, history: History) -> None:
    """Bring the client's estimates to the API's current prices (the ledger keeps them)."""
    client.run_flow(_priced(client, history))


async def arefresh_prices(client: AsyncClient, history: History) -> None:
    await client.run_flow(_priced(client, history))


def _deadline(client: _Base, timeout: float | None) -> Deadline:
    """A job's one deadline, made here and carried by every step: create, wait and downloads
    (a paid image's save gets `SAVE_FLOOR` seconds even when the wait used all the time)."""
    return Deadline.after(client.core.timeout if timeout is None else timeout)


def _finish_flow(
    client: _Base,
    task: Task | str,
    job: Job,
    target: saving.Target,
    book: Book,
    deadline: Deadline,
    on_update: OnUpdate | None,
    receiver: HintSource | None = None,
) -> Flow:
    task_id = task.id if isinstance(task, Task) else task
    request = task.request if isinstance(task, Task) else None
    # A bare id from elsewhere may be either action: the client tries both.
    action = None if isinstance(task, str) and not job.prompt else job.action
    seconds = deadline.left(0.1)
    try:
        result = yield from flows.wait(  # one look at least, even when time is up
            client.core, task, action, seconds, on_update, receiver, deadline.at_least(0.1)
        )
    except errors.TaskFailedError as error:
        book.update(status="failed", error=error.message)
        raise
    except errors.TaskTimeoutError:
        book.update(status="timeout")
        raise
    except errors.FluxclawError as error:
        book.update(status="error", error=error.message)
        raise
    result = client.bind(result)  # saving it later goes through this client
    book.learned(client, request)
    urls = tuple(image.url for image in result.images)
    # Paid from here on: the row says so until the files are on disk.
    book.update(status="unsaved", cost=result.cost_usd, urls=urls)
    stem = job.stem or saving.stem_for(job.created_at, job.prompt, task_id)
    try:
        where: saving.SaveOptions = {
            "target": target,
            "stem": stem,
            "overwrite": target.overwrite,
            "deadline": deadline.at_least(SAVE_FLOOR),
        }
        saved = yield from flows.save(client.core, result, None, where)
    except (errors.FluxclawError, OSError) as error:
        reason = error.message if isinstance(error, errors.FluxclawError) else str(error)
        cost = "" if result.cost_usd is None else f" (${result.cost_usd:.2f})"
        failure = errors.NotSavedError(
            f"task {task_id} is paid{cost} but its image was not saved: {reason}",
            task_id=task_id,
            hint=f"Save it with: fluxclaw resume {task_id}",
        )
        book.update(status="unsaved", error=str(failure))
        raise failure from error
    paths = tuple(item.path.resolve() for item in saved)
    book.update(status="completed", paths=[str(p) for p in paths], error=None, clear_error=True)
    return JobResult(
        task_id,
        "completed",
        paths,
        result.cost_usd,
        urls,
        book.row,
        result,
        job.idempotency_key,
    )


def _resume_flow(
    client: _Base,
    entry: Entry,
    book: Book,
    *,
    output: str | None,
    format: files.ImageFormat | None,
    overwrite: bool,
    timeout: float | None,
    on_update: OnUpdate | None,
    budget: float | None = None,
) -> Flow:
    deadline = _deadline(client, timeout)
    refuse_gone(entry, book.history)
    job, target = job_from(entry)
    if output is not None or format is not None:
        # One overwrite rule for every door: a file named now is replaced only when asked.
        target = saving.check_target(output or str(target.folder), format, overwrite=overwrite)
    # Saved already, and as asked: done. A format asked since is saved again (no new charge).
    other = format is not None and any(
        files.EXTENSIONS.get(Path(p).suffix.lower()) != format for p in entry.paths
    )
    if (
        entry.status == "completed"
        and entry.paths
        and all(Path(p).is_file() for p in entry.paths)
        and not other
    ):
        assert entry.task_id is not None
        return JobResult(
            entry.task_id,
            "completed",
            tuple(Path(p) for p in entry.paths),
            entry.cost,
            tuple(entry.urls),
            entry.id,
            None,
            entry.idempotency_key,
        )
    request = _stored_request(entry)
    book.durations(client, request)
    if entry.task_id is None:
        # The create got no answer (dropped, or the process died): send the same body with the
        # same key, so RunAPI answers with the task it may already have made.
        if not entry.idempotency_key:
            raise errors.ValidationError("this history row has no idempotency key to resume by")
        if entry.status == "rejected" and book.history is not None and entry.id:
            # Refused before: it counted nothing, so sending it again passes the caps first.
            yield from _priced(client, book.history)
            resolution = job.resolution or contract.DEFAULT_RESOLUTION
            cost = client.estimate_cost(job.model, resolution, action=job.action)
            guard = spending.guard(client.base_url, cost, batch=job.batch, batch_budget_usd=budget)
            book.history.reopen(entry.id, guard)
        if request is None:
            draft = client.draft(job.action, job.prompt, job.sources, job.options())
            request = yield from flows.prepare(client.core, draft)
        task: Task | str = yield from _submitted(
            client, request, entry.idempotency_key, book, on_update, deadline
        )
    elif request is not None:
        task = Task(entry.task_id, job.action, "unknown", request=request)
    else:
        task = entry.task_id
    return (yield from _finish_flow(client, task, job, target, book, deadline, on_update))


def refuse_gone(entry: Entry, history: History | None) -> None:
    """A task of a one-run sandbox (`--sandbox`) ended with it: say so, before any request."""
    if not entry.sandbox:
        return
    if history is not None and entry.id:
        history.update(entry.id, status="gone")
    what = f"task {entry.task_id}" if entry.task_id else "this task"
    raise errors.NotFoundError(
        f"{what} was made in a one-run sandbox (--sandbox), which ended with that command; "
        "there is nothing to resume (it cost nothing).",
        task_id=entry.task_id,
    )


def _stored_request(entry: Entry) -> TaskRequest | None:
    if not entry.request or entry.action not in contract.ACTIONS:
        return None
    try:
        return TaskRequest.from_body(entry.action, entry.request)
    except ValueError:
        return None


def job_from(entry: Entry) -> tuple[Job, saving.Target]:
    """The job a history row recorded, and where its files go (older rows: the current folder)."""
    record = entry.job or {}
    action: contract.Action = "remix_image" if entry.action == "remix_image" else "text_to_image"
    target_data = record.get("target")
    target = (
        saving.Target.from_json(target_data)
        if isinstance(target_data, dict) and target_data.get("folder")
        else saving.Target(Path.cwd())
    )
    job = Job(
        action=action,
        prompt=entry.prompt,
        sources=tuple(record.get("sources") or entry.params.get("sources") or ()),
        model=str(record.get("model") or entry.model or contract.DEFAULT_FAMILY),
        aspect_ratio=record.get("aspect_ratio", entry.params.get("aspect_ratio")),
        resolution=record.get("resolution", entry.params.get("resolution")),
        safety_checker=record.get("safety_checker"),
        callback_url=record.get("callback_url"),
        format=target.format,
        overwrite=target.overwrite,
        idempotency_key=entry.idempotency_key or str(uuid.uuid4()),
        created_at=float(record.get("created_at") or entry.created_at),
        stem=record.get("stem") or None,
        slot=record.get("slot") or None,
        batch=entry.batch,
        identity=entry.identity,
    )
    return job, target


def adopt(history: History | None, task_id: str, base_url: str) -> Entry:
    """A task made elsewhere (another machine, a script): a row, so it is in the history too."""
    from fluxclaw._core import check_task_id

    task_id = check_task_id(task_id)
    now = time.time()
    entry = Entry(
        id=0,
        task_id=task_id,
        action="text_to_image",
        model="",
        prompt="",
        status="processing",
        created_at=now,
        updated_at=now,
        base_url=base_url,
        job={"target": saving.Target(Path.cwd()).to_json(), "created_at": now},
    )
    if history is not None:
        entry.id = history.start(
            action="text_to_image",
            model="",
            prompt="",
            params={},
            idempotency_key=None,
            base_url=base_url,
            job=entry.job,
            task_id=task_id,
        )
    return entry


def _guarded(flow: Flow, book: Book) -> Flow:
    """The job's flow; stopped anywhere (Ctrl-C, a cancelled task), its row stays resumable."""
    try:
        return (yield from flow)
    except Exception:
        raise
    except BaseException:
        book.abandoned()
        raise


# -- public entry points ---------------------------------------------------------------------------


class RunOptions(TypedDict, total=False):
    """history (opt-in: where the job is recorded), wait (False: return once submitted),
    timeout (seconds to wait), on_update (each status), sandbox (mark a one-run sandbox's task),
    receiver (a callback receiver that wakes the wait), budget (USD: the cap on every task of
    `job.batch` in the ledger, this one included), patience (seconds to keep trying, same key,
    through rate limits that outlast the client's retries; default: none), on_rate_limit (gets
    each such wait's seconds and waits them itself: a batch lowers its pace meanwhile)."""

    history: History | None
    wait: bool
    timeout: float | None
    on_update: OnUpdate | None
    sandbox: bool
    receiver: HintSource | None
    budget: float | None
    patience: float | None
    on_rate_limit: Callable[[float], Any] | None


class ResumeOptions(TypedDict, total=False):
    """history, timeout, on_update, patience and on_rate_limit as for `run`; output and format
    replace the recorded ones (overwrite: replace an existing file named by output)."""

    history: History | None
    output: str | None
    format: files.ImageFormat | None
    overwrite: bool
    patience: float | None
    on_rate_limit: Callable[[float], Any] | None
    budget: float | None
    timeout: float | None
    on_update: OnUpdate | None


def _started(client: _Base, job: Job, options: RunOptions) -> Flow:
    history = options.get("history")

    def attempt(entry: Entry | None) -> Flow:
        if entry is not None:  # a task a rate-limited try had already made: finish it
            return _resumed(client, entry, _resume_options(options))
        book = Book(history)
        flow = _create_flow(
            client,
            job,
            book,
            sandbox=options.get("sandbox", False),
            wait=options.get("wait", True),
            timeout=options.get("timeout"),
            on_update=options.get("on_update"),
            receiver=options.get("receiver"),
            budget=options.get("budget"),
        )
        return _guarded(flow, book)

    return _patient(attempt, job.idempotency_key, history, options)


def _resumed(client: _Base, entry: Entry, options: ResumeOptions) -> Flow:
    book = Book(options.get("history"), entry.id or None, entry.task_id, entry.status)
    flow = _resume_flow(
        client,
        entry,
        book,
        output=options.get("output"),
        format=options.get("format"),
        overwrite=options.get("overwrite", False),
        timeout=options.get("timeout"),
        on_update=options.get("on_update"),
        budget=options.get("budget"),
    )
    return _guarded(flow, book)


def _resume_options(options: RunOptions) -> ResumeOptions:
    return {
        "history": options.get("history"),
        "timeout": options.get("timeout"),
        "on_update": options.get("on_update"),
        "budget": options.get("budget"),
    }


def _patient(
    attempt: Callable[[Entry | None], Flow],
    key: str | None,
    history: History | None,
    options: RunOptions | ResumeOptions,
) -> Flow:
    """A job that meets a rate limit past the client's own retries tries again, with the same
    key, for up to `patience` seconds: a task that try had made is finished (its ledger row
    says so), a refused create is sent again (its cap checked again)."""
    patience = options.get("patience")
    started = time.monotonic()
    tries = 0
    entry: Entry | None = None  # the first try starts (or resumes) as asked
    while True:
        try:
            return (yield from attempt(entry))
        except errors.RateLimitError as error:
            if patience is None or time.monotonic() - started > patience:
                raise
            delay = retries.patient_backoff(tries, error.retry_after)
            yield flows.Pause(delay, options.get("on_rate_limit"))
            tries += 1
            found = history.find(key) if history is not None and key else None
            if found is not None and found.status not in ("rejected", "gone"):
                entry = found


def run(client: Client, job: Job, **options: Unpack[RunOptions]) -> JobResult:
    """Run `job` to saved files (or, with `wait=False`, to a submitted task)."""
    return client.run_flow(_started(client, job, options))


async def arun(client: AsyncClient, job: Job, **options: Unpack[RunOptions]) -> JobResult:
    return await client.run_flow(_started(client, job, options))


def _resuming(client: _Base, entry: Entry, options: ResumeOptions) -> Flow:
    def attempt(found: Entry | None) -> Flow:
        return _resumed(client, found or entry, options)

    return _patient(attempt, entry.idempotency_key, options.get("history"), options)


def resume(client: Client, entry: Entry, **options: Unpack[ResumeOptions]) -> JobResult:
    """Finish a recorded job: wait for its task, or resend its unanswered create (same key),
    then save its files where and as the original run would have."""
    return client.run_flow(_resuming(client, entry, options))


async def aresume(client: AsyncClient, entry: Entry, **options: Unpack[ResumeOptions]) -> JobResult:
    return await client.run_flow(_resuming(client, entry, options))


def locate(history: History | None, ref: str, base_url: str) -> tuple[Entry, bool]:
    """The ledger row to finish for a task id or idempotency key, and whether it was adopted:
    the recorded row (a one-run sandbox's task is refused), else a new row for a task made
    elsewhere. Every door finishes a task through this and `finish`/`afinish`."""
    entry = history.find(ref) if history is not None else None
    if entry is None:
        return adopt(history, ref, base_url), True
    refuse_gone(entry, history)
    return entry, False


def _looked(client: _Base, ref: str, history: History | None) -> flows.Flow[TaskStatus]:
    """One status answer for a task id or key, recorded in its ledger row."""
    entry = history.find(ref) if history is not None else None
    if entry is not None:
        refuse_gone(entry, history)
    known = entry is not None and entry.task_id is not None
    action: Any = entry.action if entry is not None and known else None
    task_id = entry.task_id if entry is not None and entry.task_id else ref
    found = yield from flows.status_once(client.core, task_id, action)
    if history is not None and entry is not None and entry.status != "completed":
        urls = [image.url for image in found.images]
        # Paid but not on disk until a wait or resume saves it: it stays unfinished.
        status = "unsaved" if found.status == "completed" else found.status
        history.update(
            entry.id, status=status, cost=found.cost_usd, urls=urls or None, error=found.error
        )
    return found


def look(client: Client, ref: str, history: History | None = None) -> TaskStatus:
    """A task's status once, without waiting, recorded in its ledger row (every door's
    `status`: the CLI shows it, the MCP tool also saves a completed task through `afinish`)."""
    return client.run_flow(_looked(client, ref, history))


async def alook(client: AsyncClient, ref: str, history: History | None = None) -> TaskStatus:
    return await client.run_flow(_looked(client, ref, history))


def _unknown(history: History | None, entry: Entry, adopted: bool) -> None:
    """The API does not know this task id: a row that only ever held it (no key of ours, no
    cost, no image) is no task. One adopted for this call goes; an older one ends as `gone`.
    Either way nothing keeps trying a mistyped id (a bare `resume`, the MCP `resume` tool)."""
    row = history.get(entry.id) if history is not None else None
    if history is None or row is None or row.idempotency_key or row.cost is not None or row.urls:
        return
    if adopted:
        history.discard(row.id)
    else:
        history.update(row.id, status="gone")


def finish(
    client: Client, ref: str, *, adopted_output: str | None = None, **options: Unpack[ResumeOptions]
) -> JobResult:
    """Finish a task by its id or idempotency key: wait (or resend the create with its key),
    save and record. `adopted_output` is where a task unknown to the ledger is saved."""
    history = options.get("history")
    entry, adopted = locate(history, ref, client.base_url)
    if adopted and options.get("output") is None:
        options["output"] = adopted_output
    try:
        return resume(client, entry, **options)
    except errors.NotFoundError:
        _unknown(history, entry, adopted)
        raise


async def afinish(
    client: AsyncClient,
    ref: str,
    *,
    adopted_output: str | None = None,
    **options: Unpack[ResumeOptions],
) -> JobResult:
    history = options.get("history")
    entry, adopted = locate(history, ref, client.base_url)
    if adopted and options.get("output") is None:
        options["output"] = adopted_output
    try:
        return await aresume(client, entry, **options)
    except errors.NotFoundError:
        _unknown(history, entry, adopted)
        raise


__all__ = [
    "Job",
    "JobResult",
    "adopt",
    "afinish",
    "alook",
    "arefresh_prices",
    "aresume",
    "arun",
    "finish",
    "job_from",
    "locate",
    "look",
    "refresh_prices",
    "refuse_gone",
    "resume",
    "run",
]
