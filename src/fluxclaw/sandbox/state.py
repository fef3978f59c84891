"""Everything the sandbox remembers, in memory: tasks, money, idempotency, files, the request log.

All of it is touched only from the server's event loop, so nothing here locks. Task status is
computed from (created_at, duration) when asked, so a status read is a dictionary lookup and a
comparison; the scheduler (scheduler.py) only makes sure that tasks also *end* on time (charged,
callbacks sent) when nobody asks.
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fluxclaw import contract, credentials
from fluxclaw.sandbox import faults as faults_mod
from fluxclaw.sandbox import images
from fluxclaw.sandbox.timing import FAIL_TAG, QUEUE_SHARE, Durations, pinned_seconds

LOG_LIMIT: Final = 200_000
# Max's price is unknown to the contract; the sandbox must charge something, so it uses this
# placeholder (change it with `--max-price-cents` or `{"prices": {...}}` in /_sandbox/config).
MAX_PRICE_CENTS: Final = 16
POLICY_FAILURE: Final = "Content policy violation"
INJECTED_FAILURE: Final = "Generation failed: upstream model error (sandbox fault 'fail')"
FILE_TTL: Final = 3600.0
C2PA_UNAVAILABLE: Final = (
    "Generation failed: [sandbox:c2pa] asks for a signed image, which needs the c2pa extra: "
    + credentials.INSTALL
)


class InsufficientCredits(Exception):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"This task costs {needed} cents but only {max(available, 0)} cents are available."
        )


class ConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class SandboxConfig:
    speed: float = 1.0
    faults: faults_mod.FaultSpec = field(default_factory=faults_mod.FaultSpec)
    rate_limit: float | None = None
    # model id or family -> cents, or {"1k": cents, "2k": cents}
    prices: dict[str, int | dict[str, int]] = field(default_factory=dict)
    retry_after: bool = False
    max_price_cents: int = MAX_PRICE_CENTS
    image_format: str = "png"  # png, jpeg or webp; a prompt's [sandbox:format=X] wins
    c2pa: bool = False  # sign every image (test CA); a prompt's [sandbox:c2pa(=off)] wins

    def copy(self) -> SandboxConfig:
        return SandboxConfig(
            self.speed,
            self.faults,
            self.rate_limit,
            dict(self.prices),
            self.retry_after,
            self.max_price_cents,
            self.image_format,
            self.c2pa,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "speed": self.speed,
            "faults": self.faults.to_dict(),
            "rate_limit": self.rate_limit,
            "prices": self.prices,
            "retry_after": self.retry_after,
            "max_price_cents": self.max_price_cents,
            "image_format": self.image_format,
            "c2pa": self.c2pa,
        }


@dataclass(slots=True, eq=False)
class Task:
    id: str
    action: contract.Action
    model: contract.Model
    request: dict[str, Any]
    api_key: str
    base_url: str
    created_at: float
    started_at: float
    finished_at: float
    duration: float
    price_cents: int
    error: str | None
    idempotency_key: str | None
    settled: bool = False
    callback_deliveries: list[dict[str, Any]] = field(default_factory=list)
    image_format: str = "png"
    c2pa: bool = False

    @property
    def resolution(self) -> str:
        value = self.request.get("output_resolution")
        return str(value) if contract.is_present(value) else contract.DEFAULT_RESOLUTION

    @property
    def image_name(self) -> str:
        return f"0.{images.EXTENSIONS[self.image_format]}"

    @property
    def image_url(self) -> str:
        return f"{self.base_url}/_images/{self.id}/{self.image_name}"

    def status_at(self, now: float) -> str:
        if now >= self.finished_at:
            return "failed" if self.error is not None else "completed"
        return "processing" if now >= self.started_at else "pending"

    def envelope(self, status: str) -> dict[str, Any]:
        """The contract's status answer (also the callback body)."""
        if status == "completed":
            return {
                "id": self.id,
                "status": status,
                "images": [{"url": self.image_url}],
                "usage": {"cost": self.price_cents / 100, "generated_images": 1},
            }
        if status == "failed":
            return {"id": self.id, "status": status, "error": self.error}
        return {"id": self.id, "status": status}

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "model": self.model.id,
            "request": self.request,
            "status": self.status_at(now),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "price_cents": self.price_cents,
            "idempotency_key": self.idempotency_key,
            "callback_deliveries": list(self.callback_deliveries),
            "image_format": self.image_format,
            "c2pa": self.c2pa,
        }


@dataclass(slots=True)
class StoredFile:
    id: str
    file_name: str
    data: bytes
    mime_type: str
    created_at: float

    @property
    def expires_at(self) -> float:
        return self.created_at + FILE_TTL


@dataclass(slots=True)
class PendingUpload:
    signed_id: str
    filename: str
    byte_size: int
    checksum: str
    content_type: str
    data: bytes | None = None


@dataclass(slots=True)
class Bucket:
    tokens: float
    stamp: float


class SandboxState:
    def __init__(
        self,
        *,
        config: SandboxConfig | None = None,
        api_key: str | None = None,
        balance_cents: int = 10_000,
        seed: int = 0,
    ) -> None:
        self.api_key = api_key
        self.seed = seed
        self.initial_config = (config or SandboxConfig()).copy()
        self.initial_balance_cents = balance_cents
        self.images = images.ImageCache()
        self.signer = images.Signer()  # its test CA outlives reset(), as the cache does
        # Set by the app: called when a task ends (callbacks), and to wake the scheduler.
        self.on_settle: Callable[[Task], None] | None = None
        self.on_new_task: Callable[[], None] | None = None
        self.reset()

    def reset(self) -> None:
        self.config = self.initial_config.copy()
        self.tasks: dict[str, Task] = {}
        self.charges: list[dict[str, Any]] = []
        self.spent_cents = 0
        self.reserved_cents = 0
        self.idempotency: dict[tuple[str, str], tuple[str, Any, str]] = {}
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, PendingUpload] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.buckets: dict[str, Bucket] = {}
        self.durations = Durations(self.seed)
        self.dice = faults_mod.FaultDice(self.seed)
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0

    # -- money --------------------------------------------------------------------------------

    @property
    def balance_cents(self) -> int:
        return self.initial_balance_cents - self.spent_cents

    def price_for(self, model: contract.Model, resolution: str) -> int:
        for key in (model.id, model.family):
            override = self.config.prices.get(key)
            if isinstance(override, int):
                return override
            if isinstance(override, dict) and resolution in override:
                return override[resolution]
        price = contract.price_cents(model.family, resolution)
        return self.config.max_price_cents if price is None else price

    def spent_today_cents(self) -> int:
        midnight = math.floor(time.time() / 86400) * 86400
        return sum(c["amount_cents"] for c in self.charges if c["time"] >= midnight)

    # -- tasks --------------------------------------------------------------------------------

    def find_replay(self, api_key: str, key: str, action: str, body: Any) -> Task | None:
        """The task an earlier create with this key made, or None; raises on a different body."""
        record = self.idempotency.get((api_key, key))
        if record is None:
            return None
        if record[0] != action or record[1] != body:
            raise IdempotencyConflict()
        return self.tasks.get(record[2])

    def create_task(
        self,
        action: contract.Action,
        body: dict[str, Any],
        *,
        api_key: str,
        base_url: str,
        idempotency_key: str | None,
    ) -> Task:
        model = contract.MODELS[body["model"]]
        resolution = body.get("output_resolution")
        if not contract.is_present(resolution):
            resolution = contract.DEFAULT_RESOLUTION
        price = self.price_for(model, str(resolution))
        available = self.balance_cents - self.reserved_cents
        if price > available:
            raise InsufficientCredits(price, available)
        prompt = str(body["prompt"])
        pinned = pinned_seconds(prompt)
        duration = (
            pinned
            if pinned is not None
            else self.durations.draw(model.family, str(resolution), self.config.speed)
        )
        image_format, c2pa = images.directives(prompt, self.config.image_format, self.config.c2pa)
        error = None
        if FAIL_TAG in prompt:
            error = POLICY_FAILURE
        elif self.dice.task_fails(self.config.faults):
            error = INJECTED_FAILURE
        elif c2pa and not credentials.available():
            error = C2PA_UNAVAILABLE
        now = time.time()
        task = Task(
            id=str(uuid.uuid4()),
            action=action,
            model=model,
            request=body,
            api_key=api_key,
            base_url=base_url,
            created_at=now,
            started_at=now + duration * QUEUE_SHARE,
            finished_at=now + duration,
            duration=duration,
            price_cents=price,
            error=error,
            idempotency_key=idempotency_key,
            image_format=image_format,
            c2pa=c2pa,
        )
        self.tasks[task.id] = task
        self.reserved_cents += price
        if idempotency_key is not None:
            self.idempotency[(api_key, idempotency_key)] = (action, body, task.id)
        self._seq += 1
        heapq.heappush(self._due, (task.finished_at, self._seq, task.id))
        if self.on_new_task is not None:
            self.on_new_task()
        return task

    def status(self, task: Task, now: float) -> str:
        """The task's status now; ends it first (charge, callback) if its time has come."""
        if not task.settled and now >= task.finished_at:
            self.settle(task)
        return task.status_at(now)

    def settle(self, task: Task) -> None:
        if task.settled:
            return
        task.settled = True
        self.reserved_cents -= task.price_cents
        if task.error is None:
            self.spent_cents += task.price_cents
            self.charges.append(
                {
                    "task_id": task.id,
                    "model": task.model.id,
                    "resolution": task.resolution,
                    "amount_cents": task.price_cents,
                    "time": task.finished_at,
                }
            )
        if self.on_settle is not None:
            self.on_settle(task)

    def settle_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, _, task_id = heapq.heappop(self._due)
            task = self.tasks.get(task_id)
            if task is not None:
                self.settle(task)

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    # -- rate limit ---------------------------------------------------------------------------

    def take_token(self, key: str, now: float) -> float:
        """0 when the request may pass, else the seconds until it could (a token bucket)."""
        rate = self.config.rate_limit
        if rate is None or rate <= 0:
            return 0.0
        capacity = max(1.0, rate)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    # -- config -------------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a /_sandbox/config body; all-or-nothing, raising ConfigError on a bad value."""
        new = self.config.copy()
        for name, value in changes.items():
            if name == "faults":
                try:
                    new.faults = faults_mod.parse(value if value is not None else {})
                except faults_mod.FaultSpecError as error:
                    raise ConfigError("faults", str(error)) from error
            elif name == "speed":
                low, high = contract.SANDBOX_SPEEDS
                if not _is_number(value) or not low <= value <= high:
                    raise ConfigError(
                        "speed", f"speed={value} must be a number from {low:g} to {high:g}."
                    )
                new.speed = float(value)
            elif name == "rate_limit":
                if value is not None and (not _is_number(value) or value <= 0):
                    raise ConfigError("rate_limit", f"rate_limit={value} must be above 0 or null.")
                new.rate_limit = None if value is None else float(value)
                self.buckets.clear()
            elif name == "retry_after":
                if not isinstance(value, bool):
                    raise ConfigError("retry_after", f"retry_after={value} must be true or false.")
                new.retry_after = value
            elif name == "prices":
                new.prices = _prices(value)
            elif name == "max_price_cents":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(name, f"max_price_cents={value} must be whole cents.")
                new.max_price_cents = value
            elif name == "image_format":
                try:
                    new.image_format = images.image_format(str(value))
                except ValueError as error:
                    raise ConfigError(name, str(error)) from error
            elif name == "c2pa":
                if not isinstance(value, bool):
                    raise ConfigError(name, f"c2pa={value} must be true or false.")
                if value and not credentials.available():
                    raise ConfigError(name, str(credentials.CredentialsUnavailableError("c2pa")))
                new.c2pa = value
            else:
                allowed = (
                    "faults, speed, rate_limit, prices, retry_after, max_price_cents, "
                    "image_format, c2pa"
                )
                raise ConfigError(name, f"{name} is not a sandbox setting; allowed: {allowed}.")
        self.config = new


class IdempotencyConflict(Exception):
    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request body; "
            "use a new key for a new request."
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _prices(value: object) -> dict[str, int | dict[str, int]]:
    if not isinstance(value, dict):
        raise ConfigError("prices", "prices must be an object of model or family -> cents.")
    known = set(contract.MODELS) | set(contract.FAMILIES)
    out: dict[str, int | dict[str, int]] = {}
    for key, cents in value.items():
        if key not in known:
            raise ConfigError("prices", f"prices key {key!r} is not a Flux 2 model or family.")
        if isinstance(cents, int) and not isinstance(cents, bool) and cents >= 0:
            out[key] = cents
        elif isinstance(cents, dict) and all(
            r in contract.RESOLUTIONS and isinstance(c, int) and not isinstance(c, bool) and c >= 0
            for r, c in cents.items()
        ):
            out[key] = {str(r): int(c) for r, c in cents.items()}
        else:
            raise ConfigError("prices", f"prices[{key!r}] must be cents or {{'1k': c, '2k': c}}.")
    return out
