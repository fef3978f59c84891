"""Requests built and checked, answers read, settings and the tasks a client knows: the
clients' logic, no I/O. A wait's own state machine is `waiting.py`, beside the poll schedule;
`_flows` does the asking, so `Client` and `AsyncClient` differ only in how they send and sleep.

Validation runs before any request, every create carries an Idempotency-Key, and every error
raised once a task exists carries its id.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict

from fluxclaw import contract, errors, files
from fluxclaw.config import Settings, resolve_settings, signing_identity
from fluxclaw.deadline import NONE as NO_DEADLINE
from fluxclaw.deadline import Deadline
from fluxclaw.models import (
    Task,
    TaskRequest,
    TaskStatus,
    parse_task,
)
from fluxclaw.polling import DurationStats, PollPolicy, Preset
from fluxclaw.pricing import CostEstimate, PriceList, estimate_cost
from fluxclaw.retries import RetryPolicy
from fluxclaw.transport import DEFAULT_REQUEST_TIMEOUT, Call, Reply

DEFAULT_WAIT_TIMEOUT = 600.0
# `--allow-http`: the CLI's opt-in to plain http with another host, for every client it makes.
ALLOW_HTTP_ENV = "FLUXCLAW_ALLOW_HTTP"


class InsecureBaseWarning(UserWarning):
    """The key is sent over plain http to another machine (allowed with allow_http=True)."""


# Keys this long cannot turn up in a prompt or URL by chance: one there was pasted by mistake.
KEY_IN_TEXT_MIN = 16
ImageSource = str | os.PathLike[str] | bytes
OnUpdate = Callable[[TaskStatus], Any]
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")
_PLACEHOLDER = "https://upload.invalid/local-image-{}"


class CreateOptions(TypedDict, total=False):
    """Options of every create (`generate`, `remix`, `submit_*`); defaults in brackets.

    model ("pro"): pro, flex, max or a full model id. aspect_ratio ("1:1"; None omits it).
    resolution ("1k"; None omits it). safety_checker (omitted). callback_url (omitted).
    idempotency_key (a fresh UUID). client_request_id (omitted). extra_body: raw fields,
    checked like the rest.
    """

    model: str
    aspect_ratio: str | None
    resolution: str | None
    safety_checker: bool | None
    callback_url: str | None
    idempotency_key: str | None
    client_request_id: str | None
    extra_body: Mapping[str, Any] | None


class Draft(NamedTuple):
    """A checked request whose local source images are read but not uploaded yet."""

    request: TaskRequest
    options: CreateOptions
    local: Mapping[int, tuple[bytes, str]]


class HintSource(Protocol):
    """Something that learns of finished tasks early (a callback receiver)."""

    @property
    def callback_url(self) -> str | None: ...

    def wait_for(self, task_id: str, timeout: float) -> bool: ...

    async def await_for(self, task_id: str, timeout: float) -> bool: ...


# What every door says when the API answers 404 for a task id: it exists nowhere, so no hint
# to wait for it again.
NO_SUCH_TASK = (
    "No task has this id there: check the id (`fluxclaw history` lists yours) and the API base "
    "it was made on."
)


def resume_hint(task_id: str) -> str:
    return f'resume with fluxclaw wait {task_id} or client.wait("{task_id}")'


class Core:
    """Request building, answer reading and bookkeeping shared by both clients."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        *,
        timeout: float,
        poll: PollPolicy | Preset | None,
        retry: RetryPolicy | None,
        max_image_bytes: int,
        prices: Mapping[str, Mapping[str, int]] | None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        allow_http: bool = False,
        c2pa_cert: str | os.PathLike[str] | None = None,
        c2pa_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings: Settings = resolve_settings(api_key, base_url)
        # Saved images are signed with it (an edit of the upstream manifest, if any): read and
        # checked now, so a wrong path is an error before anything is paid.
        self.signer = signing_identity(c2pa_cert, c2pa_key)
        base = self.settings.base_url
        if not contract.is_http_url(base):
            raise errors.ValidationError(
                f"base_url={base} must be an http(s) URL like {contract.DEFAULT_BASE_URL}.",
                errors={"base_url": ["not an http(s) URL"]},
            )
        if base.lower().startswith("http://") and not contract.is_loopback(base):
            # The key would cross the network in clear text: only when the user says so.
            if not (allow_http or os.environ.get(ALLOW_HTTP_ENV) == "1"):
                raise errors.ValidationError(
                    f"base_url={base} is plain http to another machine: your key would cross "
                    "the network in clear text. Use https://, or pass --allow-http "
                    "(allow_http=True) if you mean it.",
                    errors={"base_url": ["plain http to another host"]},
                )
            warnings.warn(
                f"sending the RunAPI key in clear text to {base} (--allow-http)",
                InsecureBaseWarning,
                stacklevel=4,
            )
        self.timeout = timeout
        if isinstance(poll, str):
            poll = PollPolicy.preset(poll)
        self.poll = poll or PollPolicy()
        self.retry = retry or RetryPolicy()
        self.max_image_bytes = max_image_bytes
        if request_timeout <= 0:
            raise errors.ValidationError(f"request_timeout={request_timeout} must be above 0.")
        self.request_timeout = request_timeout
        self.prices = prices
        self.price_list = PriceList()  # the API's schedules, once asked (`flows.refresh_prices`)
        self.stats = DurationStats(self.poll)
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._lock = threading.Lock()

    def answered(self, reply: Reply) -> None:
        """Every API answer passes here (`_flows.send`): one that states the server's speed
        sets the pace of this client's poll schedule from then on (`DurationStats.heard`)."""
        self.stats.heard(contract.sandbox_speed(reply.headers.get(contract.H_SANDBOX_SPEED)))

    def until(self, deadline: Deadline | None) -> float:
        """When one request or download must be done: its own total time, or sooner if the
        job around it ends first."""
        return (deadline or NO_DEADLINE).within(self.request_timeout)

    # -- requests ------------------------------------------------------------------------------

    def build_request(
        self,
        action: contract.Action,
        prompt: str,
        options: CreateOptions,
        sources: Sequence[str] | None = None,
    ) -> TaskRequest:
        """The create body for `action`, checked against every contract rule before it is sent."""
        model = options.get("model", contract.DEFAULT_FAMILY)
        try:
            chosen = contract.resolve_model(str(model), action)
        except ValueError as exc:
            raise errors.ValidationError(str(exc), errors={"model": [str(exc)]}) from exc
        body: dict[str, Any] = {"model": chosen.id, "prompt": prompt}
        wanted = {
            "aspect_ratio": options.get("aspect_ratio", contract.DEFAULT_ASPECT_RATIO),
            "output_resolution": _lower(options.get("resolution", contract.DEFAULT_RESOLUTION)),
            "enable_safety_checker": options.get("safety_checker"),
            "callback_url": options.get("callback_url"),
        }
        body.update({k: v for k, v in wanted.items() if v is not None})
        if action == "remix_image":
            body["source_image_urls"] = list(sources or [])
        body.update(options.get("extra_body") or {})
        violations = contract.validate_request(action, body)
        if violations:
            found: dict[str, list[str]] = {}
            for violation in violations:
                found.setdefault(violation.field, []).append(violation.message)
            message = " ".join(v.message for v in violations)
            raise errors.ValidationError(message, errors=found)
        self.refuse_the_key(body)
        return TaskRequest(
            action=action,
            model=chosen.id,
            family=chosen.family,
            prompt=prompt,
            aspect_ratio=body.get("aspect_ratio"),
            resolution=str(body.get("output_resolution") or contract.DEFAULT_RESOLUTION),
            body=body,
        )

    def refuse_the_key(self, body: Mapping[str, Any]) -> None:
        """The key goes to the API base in its header and nowhere else: a body that holds it
        (a pasted prompt, a source or callback URL that RunAPI would fetch from another host)
        is refused before anything is sent. Only keys of KEY_IN_TEXT_MIN characters or more
        are looked for, so a short sandbox key never matches ordinary words."""
        key = self.settings.api_key or ""
        if len(key) < KEY_IN_TEXT_MIN:
            return
        for field, value in body.items():
            texts = value if isinstance(value, list) else [value]
            if any(isinstance(text, str) and key in text for text in texts):
                message = (
                    f"{field} holds your RunAPI key; remove it (nothing was sent: the key goes "
                    "to the API only in its Authorization header)."
                )
                raise errors.ValidationError(message, errors={field: ["holds the API key"]})

    def draft(
        self,
        action: contract.Action,
        prompt: str,
        images: Sequence[ImageSource],
        options: CreateOptions,
    ) -> Draft:
        """Everything checked, local files included, before the first upload or create."""
        remix = action == "remix_image"
        urls, local = split_sources(images) if remix else ([], {})
        request = self.build_request(action, prompt, options, urls if remix else None)
        self.check_create(options)
        return Draft(request, options, local)

    def create_call(self, request: TaskRequest, options: CreateOptions) -> tuple[Call, str]:
        key = options.get("idempotency_key") or str(uuid.uuid4())
        _check_header("idempotency_key", key)
        headers = {contract.H_IDEMPOTENCY_KEY: key}
        client_request_id = options.get("client_request_id")
        if client_request_id is not None:
            _check_header("client_request_id", client_request_id)
            headers[contract.H_CLIENT_REQUEST_ID] = client_request_id
        self.refuse_the_key(request.body)  # stored and hand-built bodies too
        path = contract.create_path(request.action)
        return Call("POST", path, json=dict(request.body), headers=headers), key

    def check_create(self, options: CreateOptions) -> None:
        """Header values are checked with the body, before uploads or any other request."""
        if options.get("idempotency_key") is not None:
            _check_header("idempotency_key", str(options["idempotency_key"]))
        if options.get("client_request_id") is not None:
            _check_header("client_request_id", str(options["client_request_id"]))

    def task_from(self, reply: Reply, request: TaskRequest, key: str, started: float) -> Task:
        status = parse_task(
            reply.body, request.action, request=request, request_id=reply.request_id, create=True
        )
        task = Task(
            id=status.task_id,
            action=request.action,
            status=status.status,
            request=request,
            idempotency_key=key,
            request_id=reply.request_id,
            replayed=status.replayed,
            started=started,
        )
        with self._lock:
            self._tasks[task.id] = task
            while len(self._tasks) > 4096:
                self._tasks.popitem(last=False)
        return task

    def known(self, task: str | Task, action: contract.Action | None) -> Task:
        """A Task for an id: the one submitted here if any, else a bare handle for resuming."""
        if isinstance(task, Task):
            return task
        task_id = check_task_id(task)
        with self._lock:
            found = self._tasks.get(task_id)
        if found is not None:
            return found
        return Task(id=task_id, action=action or "text_to_image", status="unknown")

    def status_call(self, task_id: str, action: contract.Action) -> Call:
        return Call("GET", contract.status_path(action, task_id), task_id=task_id)

    def create_failed(self, error: errors.FluxclawError, key: str) -> None:
        """A create that got no answer may still have made a task: the key gets it back."""
        if error.unclear or error.maybe_sent:
            error.hint = (
                f"The task may exist: retry with idempotency_key={key!r} to get it back "
                "without paying twice."
            )

    def submitted(self, task: Task) -> TaskStatus:
        """What `on_update` hears first: the task id, before any waiting."""
        return TaskStatus(
            task.id,
            task.action,
            task.status,
            request_id=task.request_id,
            replayed=task.replayed,
            elapsed=0.0,
        )

    def schedules_call(self, action: contract.Action | None, model: str | None) -> Call:
        params = {"service": contract.SERVICE}
        if action:
            params["action"] = action
        if model:
            try:
                params["model"] = contract.resolve_model(model, action or "text_to_image").id
            except ValueError as exc:
                raise errors.ValidationError(str(exc), errors={"model": [str(exc)]}) from exc
        return Call("GET", contract.PRICE_SCHEDULES_PATH, params=params, auth=False)

    def estimate(
        self, model: str, resolution: str, count: int, action: contract.Action
    ) -> CostEstimate:
        return estimate_cost(
            model,
            resolution,
            count,
            action=action,
            prices=self.prices,
            schedule=self.price_list.prices,
        )

    def quote_call(self, request: TaskRequest) -> Call:
        body = {"service": contract.SERVICE, "action": request.action, **request.body}
        return Call("POST", contract.PRICE_QUOTES_PATH, json=body, auth=False)

    def redacted_repr(self, name: str) -> str:
        key = "None" if self.settings.api_key is None else "'***'"
        return f"{name}(base_url={self.settings.base_url!r}, api_key={key})"


def check_task_id(task_id: str) -> str:
    """Task ids are canonical UUIDs; anything else is refused before it reaches a URL."""
    try:
        parsed = uuid.UUID(str(task_id).strip())
    except ValueError as exc:
        raise errors.ValidationError(
            f"task_id={str(task_id)[:60]!r} is not a task id; task ids are UUIDs like "
            "123e4567-e89b-12d3-a456-426614174000.",
            errors={"task_id": ["not a UUID"]},
        ) from exc
    return str(parsed)


def _check_header(name: str, value: str) -> None:
    if not value or len(value) > contract.HEADER_VALUE_MAX or not _PRINTABLE.match(value):
        raise errors.ValidationError(
            f"{name}={value[:40]!r} must be 1 to {contract.HEADER_VALUE_MAX} printable ASCII "
            "characters.",
            errors={name: ["invalid header value"]},
        )


def split_sources(images: Sequence[ImageSource]) -> tuple[list[str], dict[int, tuple[bytes, str]]]:
    """URLs stay as they are; local paths and bytes are read and checked (not yet uploaded)."""
    if isinstance(images, str | bytes | os.PathLike):
        images = [images]
    urls: list[str] = []
    local: dict[int, tuple[bytes, str]] = {}
    for index, source in enumerate(images):
        if isinstance(source, str) and contract.is_http_url(source):
            urls.append(source)
        elif isinstance(source, str) and source.startswith(("http://", "https://")):
            urls.append(source)  # malformed URL: let the contract's message name it
        else:
            local[index] = files.read_source(source, index)
            urls.append(_PLACEHOLDER.format(index))
    return urls, local


def account_body(reply: Reply) -> dict[str, Any]:
    if not isinstance(reply.body, dict):
        raise errors.ServerError(
            "the server answered an unexpected body", request_id=reply.request_id
        )
    return reply.body


def callback_for(options: CreateOptions, receiver: HintSource | None) -> CreateOptions:
    """A receiver's URL becomes the task's callback_url unless one was given."""
    if receiver is not None and options.get("callback_url") is None and receiver.callback_url:
        return {**options, "callback_url": receiver.callback_url}
    return options


def _lower(value: Any) -> Any:
    """`2K` is `2k`: a person's spelling of a choice is not a refusal."""
    return value.strip().lower() if isinstance(value, str) else value
