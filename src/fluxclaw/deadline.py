"""One deadline per job, made at the door (a CLI command, an MCP tool call, `generate(timeout=)`,
a job's `timeout`) and carried by every step of it: the create, each status request, the wait
between them and each download. A step's own limit (a request's total time, the save's floor)
is taken against it here, so time is worked out in one place; how a runner enforces it
(httpcore's backend for `Client`, `asyncio.timeout` for `AsyncClient`) is the transport's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fluxclaw import errors


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment on the monotonic clock (`at`), or none (`Deadline()`)."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """`seconds` from now (None: no deadline); anything not above 0 is refused."""
        if seconds is None:
            return cls()
        if not seconds > 0:
            raise errors.ValidationError(f"timeout={seconds} must be more than 0 seconds.")
        return cls(time.monotonic() + seconds)

    def left(self, floor: float = 0.0) -> float | None:
        """Seconds left (at least `floor`), or None without a deadline."""
        return None if self.at is None else max(self.at - time.monotonic(), floor)

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def within(self, seconds: float) -> float:
        """When a step that may take at most `seconds` must end: that, or this deadline if it
        comes first (a monotonic time)."""
        own = time.monotonic() + seconds
        return own if self.at is None else min(own, self.at)

    def at_least(self, seconds: float) -> Deadline:
        """This deadline, but no sooner than `seconds` from now (a paid image's save gets a
        few seconds even when the wait used all the time)."""
        floor = time.monotonic() + seconds
        return Deadline(None if self.at is None else max(self.at, floor))


NONE = Deadline()
