"""`Client` and `AsyncClient`: the public methods, each a one-line run of a shared flow.

The logic of every operation (retries, polling, uploads, saving) is written once in
`fluxclaw._flows` as a generator of I/O steps. The two classes differ only in how they run a
step: `Client` blocks, `AsyncClient` awaits (and runs Pillow off the event loop). Create options
are the `CreateOptions` keywords: model, aspect_ratio, resolution, safety_checker, callback_url,
idempotency_key, client_request_id, extra_body.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

import httpx

from fluxclaw import _flows as flows
from fluxclaw import contract, files, saving
from fluxclaw._core import DEFAULT_WAIT_TIMEOUT, Core, CreateOptions, Draft, ImageSource
from fluxclaw._flows import (
    GenerateOptions,
    QuoteOptions,
    SendOptions,
    SubmitOptions,
    WaitOptions,
)
from fluxclaw.models import Image, Result, Task, TaskRequest, TaskStatus
from fluxclaw.polling import DurationStats, PollPolicy, Preset
from fluxclaw.pricing import CostEstimate
from fluxclaw.retries import RetryPolicy
from fluxclaw.saving import SaveOptions
from fluxclaw.transport import (
    DEFAULT_REQUEST_TIMEOUT,
    AsyncSession,
    Call,
    Session,
    async_plain_client,
    plain_client,
)

T = TypeVar("T")
Bound = TypeVar("Bound", Result, TaskStatus)
Dest = str | os.PathLike[str] | None
BALANCE = Call("GET", contract.BALANCE_PATH)
ME = Call("GET", contract.ME_PATH)


class ClientOptions(TypedDict, total=False):
    """timeout (seconds a wait may take, default 600), http_timeout (httpx's, per read),
    request_timeout (seconds one request or download may take in all, default 60), retry
    (`RetryPolicy`), poll (`PollPolicy` or a preset name), max_image_bytes (download cap), prices
    (`{"max": {"1k": cents}}` for estimates), allow_http, c2pa_cert and c2pa_key (PEM files: sign
    every saved image with your own C2PA certificate; needs `fluxclaw[c2pa]`)."""

    timeout: float
    http_timeout: httpx.Timeout | float | None
    request_timeout: float
    retry: RetryPolicy | None
    poll: PollPolicy | Preset | None
    max_image_bytes: int
    prices: Mapping[str, Mapping[str, int]] | None
    allow_http: bool
    c2pa_cert: str | os.PathLike[str] | None
    c2pa_key: str | os.PathLike[str] | None


class _Base:
    """Construction and the parts that never do I/O."""

    def __init__(self, api_key: str | None, base_url: str | None, options: ClientOptions) -> None:
        self._options = options
        self._core = Core(
            api_key,
            base_url,
            timeout=options.get("timeout", DEFAULT_WAIT_TIMEOUT),
            poll=options.get("poll"),
            retry=options.get("retry"),
            max_image_bytes=options.get("max_image_bytes", files.MAX_IMAGE_BYTES),
            prices=options.get("prices"),
            request_timeout=options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT),
            allow_http=options.get("allow_http", False),
            c2pa_cert=options.get("c2pa_cert"),
            c2pa_key=options.get("c2pa_key"),
        )

    @property
    def core(self) -> Core:
        """The runner interface's state (settings, validation, polling, learned times): what
        the flows of `fluxclaw._flows` and the job engine are given; no I/O of its own."""
        return self._core

    @property
    def base_url(self) -> str:
        return self._core.settings.base_url

    @property
    def options(self) -> ClientOptions:
        """The options it was made with: a client of the other kind made for one save (a sync
        `save` of an async client's result) gets the same limits, retries and allow_http."""
        return ClientOptions(**self._options)

    @property
    def poll_policy(self) -> PollPolicy:
        return self._core.poll

    @property
    def durations(self) -> DurationStats:
        """Generation times seen so far, per (model id, resolution): what polling learns from."""
        return self._core.stats

    def __repr__(self) -> str:
        return self._core.redacted_repr(type(self).__name__)

    def estimate_cost(
        self,
        model: str = contract.DEFAULT_FAMILY,
        resolution: str = contract.DEFAULT_RESOLUTION,
        count: int = 1,
        *,
        action: contract.Action = "text_to_image",
    ) -> CostEstimate:
        """Cents from the contract's table, without a request; Max is unknown unless configured
        (`prices={"max": {"1k": ...}}`)."""
        return self._core.estimate(model, resolution, count, action)

    def bind(self, found: Bound) -> Bound:
        """A result or status whose images (and the result itself) keep this client: reading
        and saving them later goes through it (its pool, size cap and retries), never through a
        new one. Everything a client returns is bound; the job engine binds its results too."""
        images = tuple(replace(image, client=self) for image in found.images)
        if isinstance(found, Result):
            return replace(found, images=images, client=self)
        return replace(found, images=images)

    def draft(
        self,
        action: contract.Action,
        prompt: str,
        images: Sequence[ImageSource] = (),
        options: CreateOptions | None = None,
    ) -> Draft:
        """Check everything, local files included, before the first upload or create; no I/O
        but reading local files. `prepare` uploads them, `submit` sends the create."""
        return self._core.draft(action, prompt, images, options or {})


class Client(_Base):
    """The synchronous client: one pooled connection to the API, closed by `close()` or `with`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        """Key and base URL: arguments, then RUNAPI_API_KEY / RUNAPI_BASE_URL, then the config
        file. `transport` replaces httpx's for API calls (tests, proxies)."""
        super().__init__(api_key, base_url, options)
        settings = self._core.settings
        http_timeout = options.get("http_timeout")
        self._session = Session(
            settings.api_key, settings.base_url, transport=transport, timeout=http_timeout
        )
        self._plain = plain_client(http_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()
        self._plain.close()

    def run_flow(self, flow: flows.Flow[T]) -> T:
        """Run a flow of I/O steps to its end, blocking on each (the runner interface)."""
        outcome: Any = None
        failure: BaseException | None = None
        while not isinstance(step := flows.advance(flow, outcome, failure), flows.Done):
            try:
                outcome, failure = self._do(step), None
            except BaseException as exc:  # thrown into the flow, which may handle it
                outcome, failure = None, exc
        return step.value

    def _do(self, step: flows.Step) -> Any:
        match step:
            case flows.Exchange(call, deadline):
                return self._session.exchange(call, self._core.until(deadline))
            case flows.Fetch(url, max_bytes, task_id, deadline):
                until = self._core.until(deadline)
                return files.fetch(self._plain, url, max_bytes, task_id, until)
            case flows.Put(url, data, headers):
                return files.put(self._plain, url, data, headers, self._core.until(None))
            case flows.Sleep(seconds):
                return time.sleep(seconds)
            case flows.Listen(hints, task_id, timeout):
                return hints.wait_for(task_id, timeout)
            case flows.Notify(on_update, status):
                try:
                    return on_update(status)
                except Exception as exc:
                    _name_the_task(exc, status)
                    raise
            case flows.Pause(seconds, hook):
                return time.sleep(seconds) if hook is None else hook(seconds)
            case flows.Work(func, args, kwargs):
                return func(*args, **kwargs)

    # -- tasks -----------------------------------------------------------------------------------

    def generate(self, prompt: str, **options: Unpack[GenerateOptions]) -> Result:
        """Create a text-to-image task and wait for its images (options: `CreateOptions` and
        timeout, on_update, receiver)."""
        return self.bind(
            self.run_flow(flows.make(self._core, "text_to_image", prompt, (), options))
        )

    def remix(
        self, prompt: str, images: Sequence[ImageSource], **options: Unpack[GenerateOptions]
    ) -> Result:
        """Create a remix task from URLs, local paths or bytes (uploaded first) and wait."""
        return self.bind(
            self.run_flow(flows.make(self._core, "remix_image", prompt, images, options))
        )

    def submit_generate(self, prompt: str, **options: Unpack[SubmitOptions]) -> Task:
        """Create a text-to-image task and return its handle at once."""
        return self.run_flow(flows.submit_new(self._core, "text_to_image", prompt, (), options))

    def submit_remix(
        self, prompt: str, images: Sequence[ImageSource], **options: Unpack[SubmitOptions]
    ) -> Task:
        """Create a remix task (uploading local images first) and return its handle at once."""
        return self.run_flow(flows.submit_new(self._core, "remix_image", prompt, images, options))

    def prepare(self, draft: Draft) -> TaskRequest:
        """The draft's request with its local images uploaded (temporary URLs, 1 hour)."""
        return self.run_flow(flows.prepare(self._core, draft))

    def submit(self, request: TaskRequest, **options: Unpack[SendOptions]) -> Task:
        """Send a prepared request; the same request and key again replay the same task."""
        return self.run_flow(flows.submit(self._core, request, options))

    def status(self, task: str | Task, *, action: contract.Action | None = None) -> TaskStatus:
        """One status answer for a task, without waiting."""
        return self.bind(self.run_flow(flows.status_once(self._core, task, action)))

    def wait(self, task: str | Task, **options: Unpack[WaitOptions]) -> Result:
        """Wait until the task ends; its id alone is enough (after a timeout, a crash, or --async).

        Raises TaskFailedError, TaskTimeoutError (resumable) or UnknownStatusError, each with
        the task id. With a `receiver`, a callback wakes the wait instead of the poll schedule.
        """
        return self.bind(self.run_flow(flows.wait(self._core, task, **options)))

    # -- files -----------------------------------------------------------------------------------

    def upload(self, source: ImageSource) -> str:
        """Upload a local image (path or bytes); returns its temporary URL (valid for 1 hour)."""
        return self.run_flow(flows.upload(self._core, *files.read_source(source, 0)))

    def read(self, image: Image) -> bytes:
        """An image's bytes (pooled, size-capped, retried, never with the key)."""
        return self.run_flow(flows.download(self._core, image.url, image.metadata.get("task_id")))

    def save(
        self, result: Result, dest: Dest = None, **options: Unpack[SaveOptions]
    ) -> list[saving.SavedImage]:
        """Download a result's images (pooled, key-free connection) into a folder or file name.

        A folder gets <stem>[-n].<ext> (the stem defaults to the task id); a name like
        `cat.webp` picks the format too. An existing file is kept unless `overwrite`: a
        different image gets the next free numbered name.
        """
        return self.run_flow(flows.save(self._core, result, dest, options))

    # -- money and account ---------------------------------------------------------------------

    def price_schedules(
        self, *, action: contract.Action | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """The server's price schedules for Flux 2 (no key needed)."""
        return self.run_flow(flows.account(self._core, self._core.schedules_call(action, model)))

    def quote(self, prompt: str, **options: Unpack[QuoteOptions]) -> dict[str, Any]:
        """The server's price quote for one request, validated first (no key needed)."""
        return self.run_flow(flows.quote(self._core, prompt, options))

    def balance(self) -> dict[str, Any]:
        return self.run_flow(flows.account(self._core, BALANCE))

    def me(self) -> dict[str, Any]:
        return self.run_flow(flows.account(self._core, ME))


class AsyncClient(_Base):
    """The asyncio client: the same methods as `Client`, awaited."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(api_key, base_url, options)
        settings = self._core.settings
        http_timeout = options.get("http_timeout")
        self._session = AsyncSession(
            settings.api_key, settings.base_url, transport=transport, timeout=http_timeout
        )
        self._plain = async_plain_client(http_timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()
        await self._plain.aclose()

    close = aclose

    async def run_flow(self, flow: flows.Flow[T]) -> T:
        """Run a flow of I/O steps to its end, awaiting each (the runner interface)."""
        outcome: Any = None
        failure: BaseException | None = None
        while not isinstance(step := flows.advance(flow, outcome, failure), flows.Done):
            try:
                outcome, failure = await self._do(step), None
            except BaseException as exc:  # cancellation too: the flow may record it
                outcome, failure = None, exc
        return step.value

    async def _do(self, step: flows.Step) -> Any:
        import asyncio  # loaded already under a loop; at the top it would cost a blocking process

        match step:
            case flows.Exchange(call, deadline):
                return await self._session.exchange(call, self._core.until(deadline))
            case flows.Fetch(url, max_bytes, task_id, deadline):
                until = self._core.until(deadline)
                return await files.afetch(self._plain, url, max_bytes, task_id, until)
            case flows.Put(url, data, headers):
                return await files.aput(self._plain, url, data, headers, self._core.until(None))
            case flows.Sleep(seconds):
                return await asyncio.sleep(seconds)
            case flows.Listen(hints, task_id, timeout):
                return await hints.await_for(task_id, timeout)
            case flows.Notify(on_update, status):
                try:
                    return await _call(on_update, status)
                except Exception as exc:
                    _name_the_task(exc, status)
                    raise
            case flows.Pause(seconds, hook):
                return await (asyncio.sleep(seconds) if hook is None else _call(hook, seconds))
            case flows.Work(func, args, kwargs):
                return await asyncio.to_thread(func, *args, **kwargs)  # Pillow off the loop

    async def generate(self, prompt: str, **options: Unpack[GenerateOptions]) -> Result:
        flow = flows.make(self._core, "text_to_image", prompt, (), options)
        return self.bind(await self.run_flow(flow))

    async def remix(
        self, prompt: str, images: Sequence[ImageSource], **options: Unpack[GenerateOptions]
    ) -> Result:
        flow = flows.make(self._core, "remix_image", prompt, images, options)
        return self.bind(await self.run_flow(flow))

    async def submit_generate(self, prompt: str, **options: Unpack[SubmitOptions]) -> Task:
        return await self.run_flow(
            flows.submit_new(self._core, "text_to_image", prompt, (), options)
        )

    async def submit_remix(
        self, prompt: str, images: Sequence[ImageSource], **options: Unpack[SubmitOptions]
    ) -> Task:
        return await self.run_flow(
            flows.submit_new(self._core, "remix_image", prompt, images, options)
        )

    async def prepare(self, draft: Draft) -> TaskRequest:
        return await self.run_flow(flows.prepare(self._core, draft))

    async def submit(self, request: TaskRequest, **options: Unpack[SendOptions]) -> Task:
        return await self.run_flow(flows.submit(self._core, request, options))

    async def status(
        self, task: str | Task, *, action: contract.Action | None = None
    ) -> TaskStatus:
        return self.bind(await self.run_flow(flows.status_once(self._core, task, action)))

    async def wait(self, task: str | Task, **options: Unpack[WaitOptions]) -> Result:
        return self.bind(await self.run_flow(flows.wait(self._core, task, **options)))

    async def upload(self, source: ImageSource) -> str:
        return await self.run_flow(flows.upload(self._core, *files.read_source(source, 0)))

    async def read(self, image: Image) -> bytes:
        flow = flows.download(self._core, image.url, image.metadata.get("task_id"))
        return await self.run_flow(flow)

    async def save(
        self, result: Result, dest: Dest = None, **options: Unpack[SaveOptions]
    ) -> list[saving.SavedImage]:
        return await self.run_flow(flows.save(self._core, result, dest, options))

    async def price_schedules(
        self, *, action: contract.Action | None = None, model: str | None = None
    ) -> dict[str, Any]:
        call = self._core.schedules_call(action, model)
        return await self.run_flow(flows.account(self._core, call))

    async def quote(self, prompt: str, **options: Unpack[QuoteOptions]) -> dict[str, Any]:
        return await self.run_flow(flows.quote(self._core, prompt, options))

    async def balance(self) -> dict[str, Any]:
        return await self.run_flow(flows.account(self._core, BALANCE))

    async def me(self) -> dict[str, Any]:
        return await self.run_flow(flows.account(self._core, ME))


def _name_the_task(exc: Exception, status: TaskStatus) -> None:
    """The caller's own `on_update` failed: its error stays as it was, with a note naming the
    task it was told about (the task exists and may be charged: it can be resumed by that id)."""
    exc.add_note(f"raised by on_update for task {status.task_id} ({status.status})")


async def _call(hook: Callable[[Any], Any], value: Any) -> None:
    """A hook (`on_update`, a pause) may be a plain function or a coroutine function."""
    outcome = hook(value)
    if inspect.isawaitable(outcome):
        await outcome


__all__ = ["AsyncClient", "Client", "CreateOptions", "Draft"]
