"""What the client hands back: task handles, status snapshots, results and their images.

Answers are parsed strictly where it matters: a status outside the contract raises
`UnknownStatusError` at once instead of being polled forever, and every object knows its task id,
because a task id is all it takes to get a paid result back.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Unpack

from fluxclaw import contract, errors
from fluxclaw.saving import SavedImage

log = logging.getLogger("fluxclaw.http")

if TYPE_CHECKING:
    from fluxclaw.saving import SaveOptions

Dest = str | os.PathLike[str] | None


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What was asked for; it travels with the task so results and files carry provenance."""

    action: contract.Action
    model: str
    family: contract.Family
    prompt: str
    aspect_ratio: str | None
    resolution: str
    body: Mapping[str, Any]

    @classmethod
    def from_body(cls, action: contract.Action, body: Mapping[str, Any]) -> TaskRequest:
        """The request a stored create body describes (to resend it, or name its files)."""
        model = contract.resolve_model(str(body.get("model")), action)
        return cls(
            action=action,
            model=model.id,
            family=model.family,
            prompt=str(body.get("prompt") or ""),
            aspect_ratio=body.get("aspect_ratio"),
            resolution=str(body.get("output_resolution") or contract.DEFAULT_RESOLUTION),
            body=dict(body),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """A submitted task. Its `id` alone is enough to resume: `client.wait(task.id)`."""

    id: str
    action: contract.Action
    status: str
    request: TaskRequest | None = None
    idempotency_key: str | None = None
    request_id: str | None = None
    replayed: bool = False
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float | None = field(default=None, repr=False, compare=False)  # monotonic clock

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what `--async` prints): enough to resume with `wait`."""
        return {
            "task_id": self.id,
            "status": self.status,
            "action": self.action,
            "model": self.request.model if self.request else None,
            "prompt": self.request.prompt if self.request else None,
            "idempotency_key": self.idempotency_key,
            "request_id": self.request_id,
            "replayed": self.replayed,
            "submitted_at": self.submitted_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Image:
    """One generated image. Its URL expires after 7 days; `save` keeps it for good."""

    url: str
    index: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The client that made it (set by the client); an image built by hand is given one.
    client: Any = field(default=None, repr=False, compare=False)

    def read(self, client: Any = None) -> bytes:
        """The image's bytes, through `client` or the client that made the image."""
        reader = _reader(client or self.client, asynchronous=False)
        return reader.read(self)  # type: ignore[no-any-return]

    async def aread(self, client: Any = None) -> bytes:
        reader = _reader(client or self.client, asynchronous=True)
        return await reader.read(self)  # type: ignore[no-any-return]

    def save(
        self, dest: Dest = None, *, client: Any = None, **options: Unpack[SaveOptions]
    ) -> SavedImage:
        """Save this image alone, as `Result.save` would (named after its task)."""
        return self._alone(client).save(dest, **options)[0]

    async def asave(
        self, dest: Dest = None, *, client: Any = None, **options: Unpack[SaveOptions]
    ) -> SavedImage:
        return (await self._alone(client).asave(dest, **options))[0]

    def _alone(self, client: Any) -> Result:
        meta = self.metadata
        return Result(
            client=client or self.client,
            task_id=_stem(self),
            action=meta.get("action", "text_to_image"),
            status="completed",
            images=(self,),
            cost_usd=meta.get("cost_usd"),
        )


def _reader(client: Any, *, asynchronous: bool) -> Any:
    """The client to read or save through: the given one, when it is of the right kind (sync
    for `save`, async for `asave`). Models are plain data and import no client; a result or
    image with none (built by hand) falls back, for one release, to a client built from the
    environment, with a DeprecationWarning."""
    if client is not None and inspect.iscoroutinefunction(client.read) == asynchronous:
        return client
    # Looked up by name: models sit below the clients and never import them.
    module = importlib.import_module("fluxclaw.client")
    kind = module.AsyncClient if asynchronous else module.Client
    if client is not None:  # `save` on an async client's result: a twin with its settings
        settings = client.core.settings
        twin = kind(api_key=settings.api_key, base_url=settings.base_url, **client.options)
        return _Borrowed(twin)
    warnings.warn(
        "reading or saving an image without its client is deprecated and will stop working "
        "in the next release; pass client= (or use the result a client returned)",
        DeprecationWarning,
        stacklevel=3,
    )
    return _Borrowed(kind())


class _Borrowed:
    """A client made for one read or save, closed after it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, image: Image) -> Any:
        return self._use("read", image)

    def save(self, result: Result, dest: Dest = None, **options: Any) -> Any:
        return self._use("save", result, dest, **options)

    def _use(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(getattr(self.client, name)):

            async def run() -> Any:
                async with self.client as client:
                    return await getattr(client, name)(*args, **kwargs)

            return run()
        with self.client as client:
            return getattr(client, name)(*args, **kwargs)


def _stem(image: Image) -> str:
    task_id = str(image.metadata.get("task_id") or "image")
    return task_id if image.index == 0 else f"{task_id}-{image.index + 1}"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One answer about a task; also what `on_update` receives after each poll."""

    task_id: str
    action: contract.Action
    status: str
    images: tuple[Image, ...] = ()
    cost_usd: float | None = None
    error: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    replayed: bool = False
    elapsed: float | None = None  # seconds since submission, when this client submitted it
    polls: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status in contract.TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status,
            "action": self.action,
            "images": [image.url for image in self.images],
            "cost_usd": self.cost_usd,
            "error": self.error,
            "request_id": self.request_id,
            "elapsed": self.elapsed,
            "polls": self.polls,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """A completed task: its images, what it cost and how long it took."""

    task_id: str
    action: contract.Action
    status: str
    images: tuple[Image, ...]
    cost_usd: float | None
    model: str | None = None
    prompt: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    request_id: str | None = None
    replayed: bool = False
    submitted_at: datetime | None = None
    completed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    elapsed: float | None = None  # seconds from submission to seeing the result
    polls: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The client that waited for it: `save` reuses its connections, size cap and retries.
    client: Any = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return self.images[0].url

    @property
    def cost_cents(self) -> int | None:
        return None if self.cost_usd is None else round(self.cost_usd * 100)

    def save(self, dest: Dest = None, **options: Unpack[SaveOptions]) -> list[SavedImage]:
        """Download every image into `dest` (a folder, default the current one, or a file name)
        through the client that waited for it (its pool, size cap and retries); options as
        `Client.save`. In a folder, files are named `<stem>[-n].<ext>` (default: the task id).
        """
        reader = _reader(self.client, asynchronous=False)
        return reader.save(self, dest, **options)  # type: ignore[no-any-return]

    async def asave(self, dest: Dest = None, **options: Unpack[SaveOptions]) -> list[SavedImage]:
        reader = _reader(self.client, asynchronous=True)
        return await reader.save(self, dest, **options)  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what the CLI prints with --json)."""
        return {
            "task_id": self.task_id,
            "status": self.status,
            "action": self.action,
            "model": self.model,
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "images": [image.url for image in self.images],
            "cost_usd": self.cost_usd,
            "request_id": self.request_id,
            "replayed": self.replayed,
            "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None,
            "completed_at": self.completed_at.isoformat(),
            "elapsed": self.elapsed,
            "polls": self.polls,
        }


# ---------------------------------------------------------------------------------------------
# Parsing answers


class _Breach(ValueError):
    """One part of an answer that breaks the contract, named by its place (`images.0.url`)."""


class _Envelope(NamedTuple):
    """A task answer: create, status and callback bodies all share it. Checked by hand, field by
    field: six fields do not need a schema library on every poll (pydantic cost a cold process
    about 55 ms of imports and model building, bench/speed.py)."""

    id: str
    status: str
    image_urls: tuple[str, ...]
    cost: float | None
    error: Any
    replayed: bool


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise _Breach(f"{name}: missing")
    if not isinstance(value, str):
        raise _Breach(f"{name}: not a string")
    return value


def _image_url(item: Any, place: str) -> str:
    if not isinstance(item, Mapping):
        raise _Breach(f"{place}: not an object")
    url = item.get("url")
    if not isinstance(url, str):
        raise _Breach(f"{place}.url: missing or not a string")
    if len(url) > 8192 or not contract.is_http_url(url):  # never file:, data: or a path
        raise _Breach(f"{place}.url: not an http(s) URL")
    return url


def _cost(usage: Any) -> float | None:
    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        raise _Breach("usage: not an object")
    cost = usage.get("cost")
    if cost is None:
        return None
    if isinstance(cost, bool) or not isinstance(cost, int | float | str):
        raise _Breach("usage.cost: not a number")
    try:
        value = float(cost)
    except ValueError:
        raise _Breach("usage.cost: not a number") from None
    if not math.isfinite(value):  # a NaN cost would poison every budget it is added to
        raise _Breach("usage.cost: not a finite number")
    return value


def _envelope(body: Any) -> _Envelope:
    if not isinstance(body, Mapping):
        raise _Breach("body: not an object")
    images = body.get("images")
    if images is not None and not isinstance(images, list):
        raise _Breach("images: not a list")
    replayed = body.get("task_replayed", False)
    if not isinstance(replayed, bool):
        raise _Breach("task_replayed: not a boolean")
    return _Envelope(
        id=_text(body, "id"),
        status=_text(body, "status"),
        # only the images kept are checked: a hostile answer may list thousands
        image_urls=tuple(
            _image_url(item, f"images.{i}")
            for i, item in enumerate((images or [])[: contract.TASK_MAX_IMAGES])
        ),
        cost=_cost(body.get("usage")),
        error=body.get("error"),
        replayed=replayed,
    )


def parse_task(
    body: Any,
    action: contract.Action,
    *,
    request: TaskRequest | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    expected_id: str | None = None,
    elapsed: float | None = None,
    polls: int = 0,
    create: bool = False,
) -> TaskStatus:
    """A status snapshot from a task answer; a status outside the contract is an error.

    `create` marks a create answer, which carries no images even for a replayed finished task.
    """
    try:
        wire = _envelope(body)
    except _Breach as exc:  # names the place, never quotes the value (the key, maybe)
        raise errors.ServerError(
            f"the server answered a task body that breaks the contract ({exc})",
            request_id=request_id,
            task_id=expected_id,
        ) from None
    if not _is_task_id(wire.id):
        raise errors.ServerError(
            f"the server answered a task id that is not a UUID ({wire.id[:60]!r}); refusing it",
            request_id=request_id,
            task_id=expected_id,
        )
    if expected_id is not None and wire.id != expected_id:
        raise errors.ServerError(
            f"asked about task {expected_id} but the answer is about {wire.id}",
            request_id=request_id,
            task_id=expected_id,
        )
    if wire.status not in contract.STATUSES:
        raise errors.UnknownStatusError(
            f"task {wire.id} has status {wire.status[:60]!r}, which is not one of "
            f"{', '.join(contract.STATUSES)}; not polling again.",
            request_id=request_id,
            task_id=wire.id,
            hint=f"Check later with `fluxclaw wait {wire.id}` or client.status({wire.id!r}).",
        )
    cost = wire.cost
    images: tuple[Image, ...] = ()
    if wire.image_urls:
        meta = _metadata(wire.id, action, request, cost)
        listed = len(body["images"])
        if listed > contract.TASK_MAX_IMAGES:  # a hostile answer that fills the disk
            log.warning(
                "task %s answered %d images; keeping the first %d",
                wire.id,
                listed,
                contract.TASK_MAX_IMAGES,
            )
        images = tuple(
            Image(url=url, index=i, metadata={**meta, "index": i})
            for i, url in enumerate(wire.image_urls)
        )
    if wire.status == "completed" and not images and not create:  # a replayed create may say
        # "completed" without images; the status answer has them
        raise errors.ServerError(
            f"task {wire.id} is completed but the answer has no images",
            request_id=request_id,
            task_id=wire.id,
        )
    return TaskStatus(
        task_id=wire.id,
        action=action,
        status=wire.status,
        images=images,
        cost_usd=cost,
        error=_error_text(wire.error),
        request_id=request_id,
        retry_after=retry_after,
        replayed=wire.replayed,
        elapsed=elapsed,
        polls=polls,
        raw=body if isinstance(body, dict) else {},
    )


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _is_task_id(value: str) -> bool:
    """Task ids are canonical UUIDs; anything else (`../../evil`) never reaches a URL or path."""
    return _UUID.fullmatch(value) is not None


def result_from(status: TaskStatus, task: Task | None) -> Result:
    request = task.request if task else None
    return Result(
        task_id=status.task_id,
        action=status.action,
        status=status.status,
        images=status.images,
        cost_usd=status.cost_usd,
        model=request.model if request else None,
        prompt=request.prompt if request else None,
        aspect_ratio=request.aspect_ratio if request else None,
        resolution=request.resolution if request else None,
        request_id=status.request_id,
        replayed=task.replayed if task else False,
        submitted_at=task.submitted_at if task and task.request else None,
        elapsed=status.elapsed,
        polls=status.polls,
        raw=status.raw,
    )


def failed_error(status: TaskStatus) -> errors.TaskFailedError:
    reason = status.error or "no reason given"
    return errors.TaskFailedError(
        f"task {status.task_id} failed: {reason}",
        request_id=status.request_id,
        task_id=status.task_id,
        code="task_failed",
        hint="Failed tasks are not charged.",
    )


def _metadata(
    task_id: str, action: contract.Action, request: TaskRequest | None, cost: float | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"task_id": task_id, "action": action, "cost_usd": cost}
    if request is not None:
        meta.update(
            model=request.model,
            prompt=request.prompt,
            aspect_ratio=request.aspect_ratio,
            resolution=request.resolution,
        )
    meta["generator"] = "fluxclaw"
    return meta


def _error_text(raw: Any) -> str | None:
    """The task's failure reason as one short line (server text: never trusted to be small)."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        message = raw.get("message") or raw.get("code")
        raw = message if message else raw
    text = " ".join(str(raw)[:2000].split())
    return text if len(text) <= 500 else text[:499] + "…"
