"""Typed errors, keyed by HTTP status, each carrying what a caller needs to act on it.

Every error knows its CLI exit code (the contract's), so the CLI maps errors to exit codes in one
line, and every error raised after a task exists carries its id, so a paid result is never lost.
"""

from __future__ import annotations

from typing import ClassVar

from fluxclaw import contract
from fluxclaw.redaction import scrub


class FluxclawError(Exception):
    """Base of every error fluxclaw raises on purpose."""

    exit_code: ClassVar[int] = contract.EXIT_OTHER
    default_code: ClassVar[str] = "error"
    retry_after: float | None = None  # the server's Retry-After, when it sent one (429, 503)
    # What the failure means, decided here once for every door:
    # retryable: the same call may succeed if tried again (with backoff);
    # refused: the server answered no, so a create surely made nothing (not charged);
    # unclear: the server may have acted on the call all the same (no answer, a 5xx).
    retryable: ClassVar[bool] = False
    refused: ClassVar[bool] = False
    unclear: ClassVar[bool] = False
    # An earlier try of the same call was unclear: a create that then ends in a refusal may
    # still have made a task (set by the retry loop).
    maybe_sent: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        message = scrub(message)  # a server may echo the key in any text it sends
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.request_id = request_id
        self.task_id = task_id
        self.hint = hint

    def __str__(self) -> str:
        text = self.message.rstrip()
        if self.task_id and self.task_id not in text:
            text += f" (task {self.task_id})"
        if self.hint:
            # sentences stay sentences: "Content policy violation. Failed tasks are not charged."
            end = "" if text.endswith((".", "!", "?", ":", ";")) else "."
            text += f"{end} {self.hint}"
        return scrub(text)

    def __repr__(self) -> str:
        fields = [f"message={self.message!r}"]
        for name in ("status", "code", "request_id", "task_id"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class AuthenticationError(FluxclawError):
    refused = True
    exit_code = contract.EXIT_AUTH
    default_code = "unauthorized"


class InsufficientCreditsError(FluxclawError):
    refused = True
    exit_code = contract.EXIT_CREDITS
    default_code = "insufficient_credits"


class ValidationError(FluxclawError):
    refused = True
    exit_code = contract.EXIT_INVALID
    default_code = "validation_failed"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.errors = errors or {}


class NotFoundError(FluxclawError):
    refused = True
    exit_code = contract.EXIT_INVALID
    default_code = "not_found"


class ConflictError(FluxclawError):
    """The idempotency key was used with another body: a task exists for it (not refused)."""

    exit_code = contract.EXIT_INVALID
    default_code = "idempotency_conflict"


class RateLimitError(FluxclawError):
    retryable = True
    refused = True
    exit_code = contract.EXIT_RATE_LIMITED
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(FluxclawError):
    retryable = True
    unclear = True
    default_code = "server_error"


class NetworkError(FluxclawError):
    retryable = True
    unclear = True
    default_code = "network_error"


class RequestTimeoutError(FluxclawError):
    """An HTTP request ran out of time (not a task: see TaskTimeoutError)."""

    exit_code = contract.EXIT_TIMEOUT
    default_code = "timeout"
    retryable = True
    unclear = True


class TaskFailedError(FluxclawError):
    exit_code = contract.EXIT_TASK_FAILED
    default_code = "task_failed"


class TaskTimeoutError(FluxclawError):
    """The wait deadline passed; the task may still finish and can be resumed by its id."""

    exit_code = contract.EXIT_TIMEOUT
    default_code = "task_timeout"


class UnknownStatusError(ServerError):
    """The server answered a status outside the contract: an error, never a reason to poll."""

    default_code = "unknown_status"
    retryable = False


class BudgetExceededError(FluxclawError):
    """A create would pass a spending cap (the daily budget, or a batch's --budget); nothing
    was sent."""

    exit_code = contract.EXIT_BUDGET
    default_code = "budget_exceeded"


class StateFileError(FluxclawError):
    """A file fluxclaw keeps its state in (the history) cannot be opened, read or written; the
    message names it and says what to do."""

    default_code = "state_file"


class DownloadError(FluxclawError):
    default_code = "download_failed"


class NotSavedError(FluxclawError):
    """The task is paid for but its images could not be saved; the message says how to save
    them (its id is enough)."""

    default_code = "not_saved"


class ProvenanceWarning(UserWarning):
    """An image lost its Content Credentials (a conversion the user asked for); the file is
    labelled AI-made instead."""


def for_status(status: int) -> type[FluxclawError]:
    """The error class for an HTTP status code."""
    if status == 401 or status == 403:
        return AuthenticationError
    if status == 402:
        return InsufficientCreditsError
    if status in (400, 422):
        return ValidationError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitError
    if status == 408:
        return RequestTimeoutError
    if status >= 500:
        return ServerError
    return FluxclawError
