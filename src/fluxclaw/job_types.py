"""What a job is and what it ends with: plain data shared by the job engine (`fluxclaw.jobs`)
and the helpers below it (`_bookkeeping`), so neither imports the other's way up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxclaw import contract, files
from fluxclaw._core import CreateOptions
from fluxclaw.models import Result


@dataclass(frozen=True, slots=True)
class Job:
    """One image request and where its files go; all of it is kept in the history row."""

    action: contract.Action
    prompt: str
    sources: tuple[str, ...] = ()
    model: str = contract.DEFAULT_FAMILY
    aspect_ratio: str | None = None
    resolution: str | None = None
    safety_checker: bool | None = None
    callback_url: str | None = None
    output: str | None = None  # a folder or a file name; None: the current folder
    format: files.ImageFormat | None = None
    overwrite: bool = False  # replace an existing file named by `output`
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)  # names the files, whenever saved
    stem: str | None = None  # file name in a folder output, no suffix (default: time-prompt-id)
    batch: str | None = None  # the batch whose ledger row this is (its output folder)
    identity: str | None = None  # what the row asks for, within its batch (`batch.plan`)
    slot: str | None = None  # where in its batch: its name, or its prompt and occurrence

    @classmethod
    def generate(cls, prompt: str, **fields: Any) -> Job:
        return cls("text_to_image", prompt, **fields)

    @classmethod
    def remix(cls, prompt: str, images: Sequence[str], **fields: Any) -> Job:
        return cls("remix_image", prompt, tuple(str(i) for i in images), **fields)

    def options(self) -> CreateOptions:
        options: CreateOptions = {"model": self.model, "idempotency_key": self.idempotency_key}
        if self.aspect_ratio is not None:
            options["aspect_ratio"] = self.aspect_ratio
        if self.resolution is not None:
            options["resolution"] = self.resolution
        if self.safety_checker is not None:
            options["safety_checker"] = self.safety_checker
        if self.callback_url is not None:
            options["callback_url"] = self.callback_url
        return options

    def params(self) -> dict[str, Any]:
        """The options as the history's `params` column shows them."""
        found = {k: v for k, v in self.options().items() if k != "idempotency_key"}
        return found | ({"sources": list(self.sources)} if self.sources else {})


@dataclass(frozen=True, slots=True)
class JobResult:
    """A job's end: the task, its saved files and what it cost."""

    task_id: str
    status: str
    paths: tuple[Path, ...] = ()
    cost_usd: float | None = None
    urls: tuple[str, ...] = ()
    row: int | None = None
    result: Result | None = None  # None when an earlier run had already saved the files
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict() if self.result else {}
        return {
            **data,
            "task_id": self.task_id,
            "status": self.status,
            "images": list(self.urls),
            "cost_usd": self.cost_usd,
            "paths": [str(path) for path in self.paths],
        }
