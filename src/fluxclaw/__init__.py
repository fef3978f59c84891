"""fluxclaw: Flux 2 images through RunAPI, from Python, a terminal and OpenClaw.

    import fluxclaw
    with fluxclaw.Client() as client:
        result = client.generate("a lighthouse at dusk", model="pro", aspect_ratio="16:9")
        result.save("out/")

Names are loaded on first use (module `__getattr__`), so `import fluxclaw` stays cheap for the
CLI and does not import httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fluxclaw._version import __version__

if TYPE_CHECKING:
    from fluxclaw.callbacks import CallbackReceiver, CallbackServer
    from fluxclaw.client import AsyncClient, Client
    from fluxclaw.config import Settings, config_path, load_config, resolve_settings, write_config
    from fluxclaw.errors import (
        AuthenticationError,
        ConflictError,
        DownloadError,
        FluxclawError,
        InsufficientCreditsError,
        NetworkError,
        NotFoundError,
        NotSavedError,
        RateLimitError,
        RequestTimeoutError,
        ServerError,
        TaskFailedError,
        TaskTimeoutError,
        UnknownStatusError,
        ValidationError,
    )
    from fluxclaw.history import History
    from fluxclaw.jobs import Job, JobResult
    from fluxclaw.models import Image, Result, Task, TaskStatus
    from fluxclaw.polling import PollPolicy
    from fluxclaw.pricing import CostEstimate, estimate_cost
    from fluxclaw.retries import RetryPolicy
    from fluxclaw.saving import SavedImage

_EXPORTS: dict[str, str] = {
    "Client": "fluxclaw.client",
    "AsyncClient": "fluxclaw.client",
    "Result": "fluxclaw.models",
    "Task": "fluxclaw.models",
    "TaskStatus": "fluxclaw.models",
    "Image": "fluxclaw.models",
    "SavedImage": "fluxclaw.saving",
    "History": "fluxclaw.history",
    "Job": "fluxclaw.jobs",
    "JobResult": "fluxclaw.jobs",
    "PollPolicy": "fluxclaw.polling",
    "RetryPolicy": "fluxclaw.retries",
    "CostEstimate": "fluxclaw.pricing",
    "estimate_cost": "fluxclaw.pricing",
    "CallbackReceiver": "fluxclaw.callbacks",
    "CallbackServer": "fluxclaw.callbacks",
    "Settings": "fluxclaw.config",
    "config_path": "fluxclaw.config",
    "load_config": "fluxclaw.config",
    "resolve_settings": "fluxclaw.config",
    "write_config": "fluxclaw.config",
    **{
        name: "fluxclaw.errors"
        for name in (
            "FluxclawError",
            "AuthenticationError",
            "InsufficientCreditsError",
            "ValidationError",
            "NotFoundError",
            "ConflictError",
            "RateLimitError",
            "ServerError",
            "NetworkError",
            "RequestTimeoutError",
            "TaskFailedError",
            "TaskTimeoutError",
            "UnknownStatusError",
            "DownloadError",
            "NotSavedError",
        )
    },
}

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "CallbackReceiver",
    "CallbackServer",
    "Client",
    "ConflictError",
    "CostEstimate",
    "DownloadError",
    "FluxclawError",
    "History",
    "Image",
    "InsufficientCreditsError",
    "Job",
    "JobResult",
    "NetworkError",
    "NotFoundError",
    "NotSavedError",
    "PollPolicy",
    "RateLimitError",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "SavedImage",
    "ServerError",
    "Settings",
    "Task",
    "TaskFailedError",
    "TaskStatus",
    "TaskTimeoutError",
    "UnknownStatusError",
    "ValidationError",
    "__version__",
    "config_path",
    "estimate_cost",
    "load_config",
    "resolve_settings",
    "write_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fluxclaw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
