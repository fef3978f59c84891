"""Whether and when to try again: the retry policy, Retry-After, and the budget of one call.

A call is retried only when it is safe (reads, and creates that carry an Idempotency-Key) and
only for errors that may pass (5xx, 429, 408, dropped connections, time-outs), with full-jitter
backoff, within both an attempt count and a total time.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fluxclaw import errors

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries: attempts and total seconds are both bounded."""

    max_attempts: int = 6
    max_elapsed: float = 60.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: a uniform pick below the exponential ceiling, so retries spread out."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempt - 1)))
        return float(ceiling * rng())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (decimals too) or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def is_retryable(error: errors.FluxclawError) -> bool:
    """The error's own word (`FluxclawError.retryable`)."""
    return error.retryable


class RetryBudget:
    """Decides, after each failed attempt, whether and how long to wait before the next."""

    def __init__(
        self,
        policy: RetryPolicy,
        deadline: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.attempts = 0
        limit = clock() + policy.max_elapsed
        self.end = limit if deadline is None else min(limit, deadline)

    def next_delay(self, error: errors.FluxclawError, retry_safe: bool = True) -> float | None:
        """Seconds to sleep before retrying, or None to give up and raise `error`."""
        self.attempts += 1
        if not retry_safe or not is_retryable(error):
            return None
        if self.attempts >= self.policy.max_attempts:
            return None
        if error.retry_after is not None:
            delay = min(error.retry_after, self.policy.retry_after_cap)
        else:
            delay = self.policy.backoff(self.attempts, self.rng)
        if self.clock() + delay > self.end:
            return None
        return delay


def patient_backoff(attempt: int, retry_after: float | None) -> float:
    """How long a job waits after a rate limit outlasted the client's own retries: at least the
    server's Retry-After (capped at a minute), spread by jitter so that the jobs a storm stopped
    together do not all come back in the same instant."""
    import random

    spread = random.uniform(0.5, 1.5) * min(30.0, 0.5 * 2**attempt)
    return float(max(min(retry_after or 0.0, 60.0), spread))
