"""Every client operation written once, as a generator of I/O steps both clients run.

A flow yields steps (`Exchange` one API request, `Fetch` one image download, `Put` one upload,
`Sleep`, `Listen` for a callback, `Notify` an `on_update`, `Work` for Pillow) and receives each
step's result, or has its exception thrown in. `Client` runs the steps with blocking calls and
`AsyncClient` awaits them, as httpx drives its auth flows; the logic (retries, waiting, uploads,
saving) exists once. The job engine composes these flows too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, NoReturn, TypedDict, TypeVar, cast

from fluxclaw import contract, errors, files, pricing, saving
from fluxclaw._core import (
    Core,
    CreateOptions,
    Draft,
    HintSource,
    ImageSource,
    OnUpdate,
    account_body,
    callback_for,
)
from fluxclaw.deadline import Deadline
from fluxclaw.models import Result, Task, TaskRequest, TaskStatus
from fluxclaw.retries import RetryBudget, RetryPolicy
from fluxclaw.saving import SaveOptions
from fluxclaw.transport import Call, Reply
from fluxclaw.waiting import waiter

T = TypeVar("T")
log = logging.getLogger("fluxclaw.http")

# Steps are NamedTuples, not frozen dataclasses: as immutable, matched the same way, and a tenth
# of the cost to define (every cold process defines them) and to make (every step of every job).


class Exchange(NamedTuple):
    """One API request, no retry: a `Reply`, or the typed error. Every step that touches the
    network ends by its own total time (`Core.until`), or by `deadline` if that comes first."""

    call: Call
    deadline: Deadline | None = None


class Fetch(NamedTuple):
    """One streamed, size-capped image download without credentials: the bytes."""

    url: str
    max_bytes: int
    task_id: str | None
    deadline: Deadline | None = None


class Put(NamedTuple):
    """One upload PUT to a signed URL, with exactly its headers and no Authorization."""

    url: str
    data: bytes
    headers: Mapping[str, str]


class Sleep(NamedTuple):
    seconds: float


class Listen(NamedTuple):
    """Wait up to `timeout` for a callback about the task: whether one came."""

    hints: HintSource
    task_id: str
    timeout: float


class Notify(NamedTuple):
    on_update: OnUpdate
    status: TaskStatus


class Pause(NamedTuple):
    """Wait `seconds`, or hand them to `hook`, which waits itself (a batch gives its slot back
    meanwhile); a sync hook for `Client`, sync or async for `AsyncClient`."""

    seconds: float
    hook: Callable[[float], Any] | None = None


class Work(NamedTuple):
    """CPU work (Pillow): run as is by `Client`, off the event loop by `AsyncClient`."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


Step = Exchange | Fetch | Put | Sleep | Listen | Notify | Pause | Work
Flow = Generator[Step, Any, T]


class RunOptions(TypedDict, total=False):
    """How a wait runs: timeout (seconds; the client's by default), on_update (called with
    each status, first right after the create), receiver (a callback receiver to wake on)."""

    timeout: float | None
    on_update: OnUpdate | None
    receiver: HintSource | None


class WaitOptions(RunOptions, total=False):
    action: contract.Action | None  # for a bare id: None tries both actions


class GenerateOptions(CreateOptions, RunOptions, total=False):
    pass


class SubmitOptions(CreateOptions, total=False):
    on_update: OnUpdate | None


class SendOptions(TypedDict, total=False):
    idempotency_key: str | None
    on_update: OnUpdate | None


class QuoteOptions(CreateOptions, total=False):
    action: contract.Action
    source_image_urls: Sequence[str] | None


_RUN_KEYS = frozenset(RunOptions.__annotations__)


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):  # a dataclass: mypy keeps its T through isinstance
    value: T


def advance(flow: Flow[T], outcome: Any, failure: BaseException | None) -> Step | Done[T]:
    """The flow's next step, given the last one's outcome or failure; `Done` at its end."""
    try:
        return flow.throw(failure) if failure is not None else flow.send(outcome)
    except StopIteration as stop:
        return Done(stop.value)


def retrying(
    step: Step,
    policy: RetryPolicy,
    *,
    deadline: Deadline | None = None,
    retry_safe: bool = True,
) -> Flow[Any]:
    """`step` again after each retryable failure, with backoff, within the policy's bounds
    and the job's deadline."""
    budget = RetryBudget(policy, deadline.at if deadline is not None else None)
    unclear = False  # whether a failed try may have reached the server
    while True:
        try:
            return (yield step)
        except errors.FluxclawError as error:
            delay = budget.next_delay(error, retry_safe)
            if delay is None:
                error.maybe_sent = error.maybe_sent or unclear
                raise
            unclear = unclear or error.unclear
            log.info("%s; retrying in %.2fs", error, delay)
        yield Sleep(delay)


def send(core: Core, call: Call, deadline: Deadline | None = None) -> Flow[Reply]:
    if call.auth and not core.settings.api_key:
        raise errors.AuthenticationError(
            "No RunAPI key: pass api_key=, set RUNAPI_API_KEY or run "
            "`fluxclaw config --api-key KEY`.",
            code="missing_api_key",
        )
    reply: Reply = yield from retrying(
        Exchange(call, deadline), core.retry, deadline=deadline, retry_safe=call.retry_safe
    )
    core.answered(reply)
    return reply


# -- tasks ---------------------------------------------------------------------------------------


def make(
    core: Core,
    action: contract.Action,
    prompt: str,
    images: Sequence[ImageSource],
    options: GenerateOptions,
) -> Flow[Result]:
    """Create a task and wait for its images."""
    run = cast(RunOptions, {k: v for k, v in options.items() if k in _RUN_KEYS})
    create = cast(CreateOptions, {k: v for k, v in options.items() if k not in _RUN_KEYS})
    submitting = cast(SubmitOptions, {**callback_for(create, run.get("receiver"))})
    submitting["on_update"] = run.get("on_update")
    # One deadline bounds the create as well as the wait (uploads have their own).
    timeout = run.get("timeout")
    deadline = Deadline.after(core.timeout if timeout is None else timeout)
    task = yield from submit_new(core, action, prompt, images, submitting, deadline)
    return (yield from wait(core, task, **run, deadline=deadline))


def submit_new(
    core: Core,
    action: contract.Action,
    prompt: str,
    images: Sequence[ImageSource],
    options: SubmitOptions,
    deadline: Deadline | None = None,
) -> Flow[Task]:
    """Check, upload local sources, create (by `deadline`, if given)."""
    create_options = cast(CreateOptions, {k: v for k, v in options.items() if k != "on_update"})
    draft = core.draft(action, prompt, images, create_options)
    request = yield from prepare(core, draft)
    return (yield from create(core, request, draft.options, options.get("on_update"), deadline))


def submit(core: Core, request: TaskRequest, options: SendOptions) -> Flow[Task]:
    key: CreateOptions = {"idempotency_key": options.get("idempotency_key")}
    return (yield from create(core, request, key, options.get("on_update")))


def create(
    core: Core,
    request: TaskRequest,
    options: CreateOptions,
    on_update: OnUpdate | None,
    deadline: Deadline | None = None,
) -> Flow[Task]:
    call, key = core.create_call(request, options)
    started = time.monotonic()
    try:
        reply = yield from send(core, call, deadline)
    except errors.FluxclawError as error:
        core.create_failed(error, key)  # the hint to resume by the key, when it may exist
        raise
    task = core.task_from(reply, request, key, started)
    if on_update is not None:
        yield Notify(on_update, core.submitted(task))
    return task


def _reraise(found: errors.FluxclawError, caught: errors.FluxclawError) -> NoReturn:
    """Raise what an error became: itself with its own cause, or a new one caused by it."""
    if found is caught:
        raise found
    raise found from caught


def prepare(core: Core, draft: Draft) -> Flow[TaskRequest]:
    """The draft's request with its local images uploaded (temporary URLs, 1 hour)."""
    if not draft.local:
        return draft.request
    urls = list(draft.request.body["source_image_urls"])
    for index, (data, name) in draft.local.items():
        urls[index] = yield from upload(core, data, name)
    return core.build_request("remix_image", draft.request.prompt, draft.options, urls)


def status_once(core: Core, task: str | Task, action: contract.Action | None) -> Flow[TaskStatus]:
    wait = waiter(core, task, action, None, None, None)
    while True:
        try:
            return wait.observe((yield from send(core, wait.call)))[0]
        except errors.NotFoundError as error:
            if not wait.not_found(error):
                wait.annotate(error)  # "no such task", as a wait says it
                raise


def wait(
    core: Core,
    task: str | Task,
    action: contract.Action | None = None,
    timeout: float | None = None,
    on_update: OnUpdate | None = None,
    receiver: HintSource | None = None,
    deadline: Deadline | None = None,
) -> Flow[Result]:
    """Poll (or listen) until the task ends, by `deadline` (a job's), else `timeout` seconds
    from now (the client's by default)."""
    state = waiter(core, task, action, timeout, on_update, receiver, deadline)
    while True:
        delay = state.delay()
        if state.listening and receiver is not None:
            state.hint_spent = yield Listen(receiver, state.task.id, delay)
        elif delay > 0:
            yield Sleep(delay)
        try:
            reply = yield from send(core, state.call, state.deadline)
            status, result = state.observe(reply)
        except errors.NotFoundError as error:
            if state.not_found(error):
                continue
            _reraise(state.annotate(error), error)
        except errors.FluxclawError as error:
            _reraise(state.annotate(error), error)
        if on_update is not None:
            yield Notify(on_update, status)
        if result is not None:
            return result
        state.after_update(status)


# -- files ---------------------------------------------------------------------------------------


def upload(core: Core, data: bytes, name: str) -> Flow[str]:
    prepared = yield from send(core, files.prepare_call(data, name))
    signed_id, url, headers = files.upload_target(prepared.body)
    yield from retrying(Put(url, data, headers), core.retry)
    confirmed = yield from send(core, files.confirm_call(signed_id))
    return files.file_url(confirmed.body)


def download(
    core: Core, url: str, task_id: str | None, deadline: Deadline | None = None
) -> Flow[bytes]:
    fetch = Fetch(url, core.max_image_bytes, task_id, deadline)
    try:
        data: bytes = yield from retrying(fetch, core.retry, deadline=deadline)
    except errors.FluxclawError as error:
        raise files.download_failed(url, error, task_id) from error
    return data


def save(
    core: Core, result: Result, dest: str | os.PathLike[str] | None, options: SaveOptions
) -> Flow[list[saving.SavedImage]]:
    """Each image downloaded, then stored (converted, with its provenance) atomically. After
    paying, an existing file is never refused: `saving.store` numbers the new one instead."""
    target = options.get("target") or saving.check_target(
        dest, options.get("format"), overwrite=True
    )
    paths = target.paths(len(result.images), options.get("stem") or result.task_id)
    deadline = options.get("deadline") or Deadline.after(options.get("timeout"))
    saved = []
    for image, (path, fmt) in zip(result.images, paths, strict=True):
        data = yield from download(core, image.url, result.task_id, deadline)
        stored = {
            "fmt": fmt,
            "quality": options.get("quality"),
            "metadata": image.metadata,
            "sidecar": options.get("sidecar", True),
            "url": image.url,
            "overwrite": options.get("overwrite", False),
            "signer": core.signer,
            "label_prompt": options.get("label_prompt", False),
        }
        saved.append((yield Work(saving.store, (data, path), stored)))
    return saved


# -- money and account ---------------------------------------------------------------------------


def account(core: Core, call: Call) -> Flow[dict[str, Any]]:
    return account_body((yield from send(core, call)))


# The schedules are a nicety for estimates: asking may not hold a create up for long.
PRICES_DEADLINE = 5.0


def refresh_prices(core: Core) -> Flow[None]:
    """Bring `core.price_list` up to date with the API's schedules (with their ETag: an
    unchanged schedule is a 304). Any failure keeps what is known (else the contract's table)
    and asks again a minute later; the create never waits on it for more than a few seconds."""
    known = core.price_list
    if known.fresh():
        return
    call = core.schedules_call(None, None)
    headers = {"If-None-Match": known.etag} if known.etag and known.prices else {}
    call = replace(call, headers=headers, not_modified_ok=True)
    try:
        reply = yield from send(core, call, Deadline.after(PRICES_DEADLINE))
    except errors.FluxclawError:
        known.failed()
        return
    if reply.status == 304:
        known.checked_at = time.time()
        return
    prices = pricing.schedule_prices(reply.body)
    if not prices:
        known.failed()
        return
    etag = reply.headers.get("etag")
    known.prices = prices
    known.etag = etag if etag and len(etag) < 200 else None
    known.checked_at = time.time()


def quote(core: Core, prompt: str, options: QuoteOptions) -> Flow[dict[str, Any]]:
    action = options.get("action", "text_to_image")
    create = cast(
        CreateOptions,
        {k: v for k, v in options.items() if k not in ("action", "source_image_urls")},
    )
    request = core.build_request(action, prompt, create, options.get("source_image_urls"))
    return (yield from account(core, core.quote_call(request)))
