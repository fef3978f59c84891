"""`Client` and `AsyncClient`: generate, remix, submit, get, wait, save, and the money calls.

Both drive the same sans-I/O core (`fluxclaw.core`) and the same transport (`fluxclaw.transport`,
where retries live), so they differ only in how they send and sleep. Create options are the
`CreateOptions` keywords: model, aspect_ratio, resolution, safety_checker, callback_url,
idempotency_key, client_request_id, extra_body.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from fluxclaw import contract, errors, files
from fluxclaw.core import (
    DEFAULT_WAIT_TIMEOUT,
    Core,
    CreateOptions,
    HintSource,
    ImageSource,
    OnUpdate,
    account_body,
    callback_for,
    split_sources,
)
from fluxclaw.models import Image, Result, Task, TaskRequest, TaskStatus
from fluxclaw.polling import DurationStats, PollPolicy, Preset
from fluxclaw.pricing import CostEstimate
from fluxclaw.transport import (
    AsyncSession,
    Call,
    RetryPolicy,
    Session,
    async_plain_client,
    plain_client,
)

Dest = str | os.PathLike[str] | None


@dataclass(frozen=True, slots=True)
class Draft:
    """A checked request whose local source images are read but not uploaded yet."""

    request: TaskRequest
    options: CreateOptions
    local: Mapping[int, tuple[bytes, str]]


class _Base:
    """Construction and the parts that never do I/O."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        *,
        timeout: float,
        retry: RetryPolicy | None,
        poll: PollPolicy | Preset | None,
        max_image_bytes: int,
        prices: Mapping[str, Mapping[str, int]] | None,
    ) -> None:
        self._core = Core(
            api_key,
            base_url,
            timeout=timeout,
            poll=poll,
            retry=retry,
            max_image_bytes=max_image_bytes,
            prices=prices,
        )

    @property
    def base_url(self) -> str:
        return self._core.settings.base_url

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
        model: str = "pro",
        resolution: str = contract.DEFAULT_RESOLUTION,
        count: int = 1,
        *,
        action: contract.Action = "text_to_image",
    ) -> CostEstimate:
        """Cents from the contract's table, without a request; Max is unknown unless configured
        (`prices={"max": {"1k": ...}}`)."""
        return self._core.estimate(model, resolution, count, action)

    def draft(
        self,
        action: contract.Action,
        prompt: str,
        images: Sequence[ImageSource] = (),
        options: CreateOptions | None = None,
    ) -> Draft:
        """Check everything, local files included, before the first upload or create; no I/O
        but reading local files. `prepare` uploads them, `submit` sends the create."""
        options = options or {}
        urls, local = split_sources(images) if action == "remix_image" else ([], {})
        request = self._core.build_request(
            action, prompt, options, urls if action == "remix_image" else None
        )
        self._core.check_create(options)
        return Draft(request, options, local)

    def _save_plan(
        self,
        result: Result,
        dest: Dest,
        format: files.ImageFormat | None,
        stem: str | None,
        target: files.Target | None,
    ) -> list[tuple[Image, Path, files.ImageFormat | None]]:
        """Each image with its path: the target's, else `dest` checked (after paying, an
        existing file is not refused: `store` numbers the new one instead)."""
        target = target or files.check_target(dest, format, overwrite=True)
        paths = target.paths(len(result.images), stem or result.task_id)
        return [(image, p, f) for image, (p, f) in zip(result.images, paths, strict=True)]

    def _store(
        self,
        data: bytes,
        image: Image,
        path: Path,
        fmt: files.ImageFormat | None,
        quality: int | None,
        sidecar: bool,
        overwrite: bool,
    ) -> files.SavedImage:
        return files.store(
            data,
            path,
            fmt=fmt,
            quality=quality,
            metadata=image.metadata,
            sidecar=sidecar,
            url=image.url,
            overwrite=overwrite,
        )


class Client(_Base):
    """The synchronous client: one pooled connection to the API, closed by `close()` or `with`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        http_timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | Preset | None = None,
        max_image_bytes: int = files.MAX_IMAGE_BYTES,
        prices: Mapping[str, Mapping[str, int]] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_image_bytes=max_image_bytes,
            prices=prices,
        )
        settings = self._core.settings
        self._session = Session(
            settings.api_key,
            settings.base_url,
            policy=self._core.retry,
            timeout=http_timeout,
            transport=transport,
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

    # -- tasks -----------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
        **options: Unpack[CreateOptions],
    ) -> Result:
        """Create a text-to-image task and wait for its images."""
        task = self.submit_generate(prompt, on_update=on_update, **callback_for(options, receiver))
        return self.wait(task, timeout=timeout, on_update=on_update, receiver=receiver)

    def remix(
        self,
        prompt: str,
        images: Sequence[ImageSource],
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
        **options: Unpack[CreateOptions],
    ) -> Result:
        """Create a remix task from URLs, local paths or bytes (uploaded first) and wait."""
        task = self.submit_remix(
            prompt, images, on_update=on_update, **callback_for(options, receiver)
        )
        return self.wait(task, timeout=timeout, on_update=on_update, receiver=receiver)

    def submit_generate(
        self, prompt: str, *, on_update: OnUpdate | None = None, **options: Unpack[CreateOptions]
    ) -> Task:
        """Create a text-to-image task and return its handle at once."""
        draft = self.draft("text_to_image", prompt, (), options)
        return self._create(draft.request, options, on_update)

    def submit_remix(
        self,
        prompt: str,
        images: Sequence[ImageSource],
        *,
        on_update: OnUpdate | None = None,
        **options: Unpack[CreateOptions],
    ) -> Task:
        """Create a remix task (uploading local images first) and return its handle at once."""
        request = self.prepare(self.draft("remix_image", prompt, images, options))
        return self._create(request, options, on_update)

    def prepare(self, draft: Draft) -> TaskRequest:
        """The draft's request with its local images uploaded (temporary URLs, 1 hour)."""
        if not draft.local:
            return draft.request
        urls = list(draft.request.body["source_image_urls"])
        for index, (data, name) in draft.local.items():
            urls[index] = self._upload(data, name)
        return self._core.build_request("remix_image", draft.request.prompt, draft.options, urls)

    def submit(
        self,
        request: TaskRequest,
        *,
        idempotency_key: str | None = None,
        on_update: OnUpdate | None = None,
    ) -> Task:
        """Send a prepared request; the same request and key again replay the same task."""
        return self._create(request, {"idempotency_key": idempotency_key}, on_update)

    def get(self, task: str | Task, *, action: contract.Action | None = None) -> TaskStatus:
        """One status answer for a task, without waiting."""
        wait = self._core.waiter(task, action, None, None, None)
        while True:
            try:
                return wait.observe(self._session.send(wait.call))[0]
            except errors.NotFoundError as error:
                if not wait.not_found(error):
                    raise

    def wait(
        self,
        task: str | Task,
        *,
        action: contract.Action | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
    ) -> Result:
        """Wait until the task ends; its id alone is enough (after a timeout, a crash, or --async).

        Raises TaskFailedError, TaskTimeoutError (resumable) or UnknownStatusError, each with
        the task id. With a `receiver`, a callback wakes the wait instead of the poll schedule.
        """
        wait = self._core.waiter(task, action, timeout, on_update, receiver)
        while True:
            delay = wait.delay()
            if wait.listening and receiver is not None:
                wait.hint_spent = receiver.wait_for(wait.task.id, delay)
            elif delay > 0:
                time.sleep(delay)
            try:
                status, result = wait.observe(self._session.send(wait.call, deadline=wait.deadline))
            except errors.NotFoundError as error:
                if wait.not_found(error):
                    continue
                raise wait.annotate(error) from None
            except errors.FluxclawError as error:
                raise wait.annotate(error) from None
            if on_update is not None:
                on_update(status)
            if result is not None:
                return replace(result, client=self)
            wait.after_update(status)

    def _create(
        self, request: TaskRequest, options: CreateOptions, on_update: OnUpdate | None
    ) -> Task:
        call, key = self._core.create_call(request, options)
        started = time.monotonic()
        try:
            reply = self._session.send(call)
        except errors.FluxclawError as error:
            raise self._core.create_failed(error, key) from None
        task = self._core.task_from(reply, request, key, started)
        if on_update is not None:
            on_update(self._core.submitted(task))
        return task

    # -- files -----------------------------------------------------------------------------------

    def upload(self, source: ImageSource) -> str:
        """Upload a local image (path or bytes); returns its temporary URL (valid for 1 hour)."""
        data, name = files.read_source(source, 0)
        return self._upload(data, name)

    def _upload(self, data: bytes, name: str) -> str:
        prepared = self._session.send(files.prepare_call(data, name))
        signed_id, url, headers = files.upload_target(prepared.body)
        files.put(self._plain, url, data, headers, self._core.retry)
        return files.file_url(self._session.send(files.confirm_call(signed_id)).body)

    def save(
        self,
        result: Result,
        dest: Dest = None,
        *,
        format: files.ImageFormat | None = None,
        quality: int | None = None,
        sidecar: bool = True,
        stem: str | None = None,
        overwrite: bool = False,
        target: files.Target | None = None,
    ) -> list[files.SavedImage]:
        """Download a result's images (pooled, key-free connection) into a folder or file name.

        A folder gets <stem>[-n].<ext> (the stem defaults to the task id); a name like
        `cat.webp` picks the format too. An existing file is kept unless `overwrite`: a
        different image gets the next free numbered name.
        """
        saved = []
        for image, path, fmt in self._save_plan(result, dest, format, stem, target):
            data = files.download(
                self._plain,
                image.url,
                max_bytes=self._core.max_image_bytes,
                policy=self._core.retry,
                task_id=result.task_id,
            )
            saved.append(self._store(data, image, path, fmt, quality, sidecar, overwrite))
        return saved

    # -- money and account ---------------------------------------------------------------------

    def price_schedules(
        self, *, action: contract.Action | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """The server's price schedules for Flux 2 (no key needed)."""
        return account_body(self._session.send(self._core.schedules_call(action, model)))

    def quote(
        self,
        prompt: str,
        *,
        action: contract.Action = "text_to_image",
        source_image_urls: Sequence[str] | None = None,
        **options: Unpack[CreateOptions],
    ) -> dict[str, Any]:
        """The server's price quote for one request, validated first (no key needed)."""
        request = self._core.build_request(action, prompt, options, source_image_urls)
        return account_body(self._session.send(self._core.quote_call(request)))

    def balance(self) -> dict[str, Any]:
        return account_body(self._session.send(Call("GET", "/api/v1/me/balance")))

    def me(self) -> dict[str, Any]:
        return account_body(self._session.send(Call("GET", "/api/v1/me")))


class AsyncClient(_Base):
    """The asyncio client: the same methods as `Client`, awaited."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        http_timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | Preset | None = None,
        max_image_bytes: int = files.MAX_IMAGE_BYTES,
        prices: Mapping[str, Mapping[str, int]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            retry=retry,
            poll=poll,
            max_image_bytes=max_image_bytes,
            prices=prices,
        )
        settings = self._core.settings
        self._session = AsyncSession(
            settings.api_key,
            settings.base_url,
            policy=self._core.retry,
            timeout=http_timeout,
            transport=transport,
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

    async def generate(
        self,
        prompt: str,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
        **options: Unpack[CreateOptions],
    ) -> Result:
        task = await self.submit_generate(
            prompt, on_update=on_update, **callback_for(options, receiver)
        )
        return await self.wait(task, timeout=timeout, on_update=on_update, receiver=receiver)

    async def remix(
        self,
        prompt: str,
        images: Sequence[ImageSource],
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
        **options: Unpack[CreateOptions],
    ) -> Result:
        task = await self.submit_remix(
            prompt, images, on_update=on_update, **callback_for(options, receiver)
        )
        return await self.wait(task, timeout=timeout, on_update=on_update, receiver=receiver)

    async def submit_generate(
        self, prompt: str, *, on_update: OnUpdate | None = None, **options: Unpack[CreateOptions]
    ) -> Task:
        draft = self.draft("text_to_image", prompt, (), options)
        return await self._create(draft.request, options, on_update)

    async def submit_remix(
        self,
        prompt: str,
        images: Sequence[ImageSource],
        *,
        on_update: OnUpdate | None = None,
        **options: Unpack[CreateOptions],
    ) -> Task:
        request = await self.prepare(self.draft("remix_image", prompt, images, options))
        return await self._create(request, options, on_update)

    async def prepare(self, draft: Draft) -> TaskRequest:
        if not draft.local:
            return draft.request
        urls = list(draft.request.body["source_image_urls"])
        for index, (data, name) in draft.local.items():
            urls[index] = await self._upload(data, name)
        return self._core.build_request("remix_image", draft.request.prompt, draft.options, urls)

    async def submit(
        self,
        request: TaskRequest,
        *,
        idempotency_key: str | None = None,
        on_update: OnUpdate | None = None,
    ) -> Task:
        return await self._create(request, {"idempotency_key": idempotency_key}, on_update)

    async def get(self, task: str | Task, *, action: contract.Action | None = None) -> TaskStatus:
        wait = self._core.waiter(task, action, None, None, None)
        while True:
            try:
                return wait.observe(await self._session.send(wait.call))[0]
            except errors.NotFoundError as error:
                if not wait.not_found(error):
                    raise

    async def wait(
        self,
        task: str | Task,
        *,
        action: contract.Action | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        receiver: HintSource | None = None,
    ) -> Result:
        wait = self._core.waiter(task, action, timeout, on_update, receiver)
        while True:
            delay = wait.delay()
            if wait.listening and receiver is not None:
                wait.hint_spent = await receiver.await_for(wait.task.id, delay)
            elif delay > 0:
                await asyncio.sleep(delay)
            try:
                reply = await self._session.send(wait.call, deadline=wait.deadline)
                status, result = wait.observe(reply)
            except errors.NotFoundError as error:
                if wait.not_found(error):
                    continue
                raise wait.annotate(error) from None
            except errors.FluxclawError as error:
                raise wait.annotate(error) from None
            if on_update is not None:
                await _call(on_update, status)
            if result is not None:
                return replace(result, client=self)
            wait.after_update(status)

    async def _create(
        self, request: TaskRequest, options: CreateOptions, on_update: OnUpdate | None
    ) -> Task:
        call, key = self._core.create_call(request, options)
        started = time.monotonic()
        try:
            reply = await self._session.send(call)
        except errors.FluxclawError as error:
            raise self._core.create_failed(error, key) from None
        task = self._core.task_from(reply, request, key, started)
        if on_update is not None:
            await _call(on_update, self._core.submitted(task))
        return task

    async def upload(self, source: ImageSource) -> str:
        data, name = files.read_source(source, 0)
        return await self._upload(data, name)

    async def _upload(self, data: bytes, name: str) -> str:
        prepared = await self._session.send(files.prepare_call(data, name))
        signed_id, url, headers = files.upload_target(prepared.body)
        await files.aput(self._plain, url, data, headers, self._core.retry)
        return files.file_url((await self._session.send(files.confirm_call(signed_id))).body)

    async def save(
        self,
        result: Result,
        dest: Dest = None,
        *,
        format: files.ImageFormat | None = None,
        quality: int | None = None,
        sidecar: bool = True,
        stem: str | None = None,
        overwrite: bool = False,
        target: files.Target | None = None,
    ) -> list[files.SavedImage]:
        saved = []
        for image, path, fmt in self._save_plan(result, dest, format, stem, target):
            data = await files.adownload(
                self._plain,
                image.url,
                max_bytes=self._core.max_image_bytes,
                policy=self._core.retry,
                task_id=result.task_id,
            )
            # Pillow's work (metadata, conversion) runs off the event loop.
            saved.append(
                await asyncio.to_thread(
                    self._store, data, image, path, fmt, quality, sidecar, overwrite
                )
            )
        return saved

    async def price_schedules(
        self, *, action: contract.Action | None = None, model: str | None = None
    ) -> dict[str, Any]:
        return account_body(await self._session.send(self._core.schedules_call(action, model)))

    async def quote(
        self,
        prompt: str,
        *,
        action: contract.Action = "text_to_image",
        source_image_urls: Sequence[str] | None = None,
        **options: Unpack[CreateOptions],
    ) -> dict[str, Any]:
        request = self._core.build_request(action, prompt, options, source_image_urls)
        return account_body(await self._session.send(self._core.quote_call(request)))

    async def balance(self) -> dict[str, Any]:
        return account_body(await self._session.send(Call("GET", "/api/v1/me/balance")))

    async def me(self) -> dict[str, Any]:
        return account_body(await self._session.send(Call("GET", "/api/v1/me")))


async def _call(on_update: OnUpdate, status: TaskStatus) -> None:
    """`on_update` may be a plain function or a coroutine function."""
    outcome = on_update(status)
    if inspect.isawaitable(outcome):
        await outcome


__all__ = ["AsyncClient", "Client", "CreateOptions", "Draft"]
