"""When to ask about a task again: pure logic, no I/O, shared by the sync and async clients.

A task cannot be done long before its model's usual time, so the first poll waits for most of
that time; around the likely finish the polls come quickly; long past it they back off. The
usual time starts from the contract and is then learned from the completions this client has
seen, per model and resolution, so the schedule fits whatever the server really does (including
a sandbox running a hundred times faster). A server's Retry-After always wins, and a hard
deadline bounds the whole wait.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from fluxclaw import contract

Preset = Literal["eager", "balanced", "frugal"]


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Knobs of the poll schedule; `PollPolicy.preset("eager"|"balanced"|"frugal")` for presets.

    Times are seconds. `time_scale` multiplies the contract's typical times (a sandbox at
    speed=100 wants 0.01), so the schedule is right from the first task, not only after learning.
    """

    first_factor: float = 0.85  # first poll at this share of the typical time (no history yet)
    quantile: float = 0.3  # learned: first poll where this share of tasks is already done
    near_fraction: float = 0.1  # interval near the likely finish, as a share of the typical time
    near_max: float = 2.0  # never wait longer than this between polls near the likely finish
    late_factor: float = 1.5  # past this multiple of the typical time, back off...
    backoff: float = 1.5  # ...geometrically by this factor...
    max_interval: float = 5.0  # ...up to this (and never longer than one typical duration)
    min_interval: float = 0.01
    time_scale: float = 1.0
    history: int = 64  # durations and first polls remembered per model and resolution
    probe_share: float = 0.75  # when this share of recent first polls saw the task done...
    probe_factor: float = 0.3  # ...the first poll moves to this share of the earliest of them
    recent: int = 8  # how many recent first polls that check looks at
    spread_divisor: float = 4.0  # near-finish interval = spread (p90 - p10) / this
    min_samples: int = 3  # durations needed before the learned schedule replaces the contract's

    @classmethod
    def preset(cls, name: Preset, **changes: float | int) -> PollPolicy:
        base = _PRESETS[name]
        return replace(base, **changes) if changes else base  # type: ignore[arg-type]


_PRESETS: dict[str, PollPolicy] = {
    "eager": PollPolicy(first_factor=0.75, quantile=0.15, near_fraction=0.05, spread_divisor=8.0),
    "balanced": PollPolicy(),
    "frugal": PollPolicy(first_factor=0.9, quantile=0.35, near_fraction=0.12, spread_divisor=3.0),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Where to poll for one task: first poll, interval near the finish, when it counts as late."""

    first: float
    near: float
    late_after: float
    cap: float


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted `values` (at least one)."""
    if len(values) == 1:
        return values[0]
    pos = q * (len(values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


class DurationStats:
    """What this client learned about generation times, per (model id, resolution).

    Each completed task adds one record: its duration, bracketed between the last poll that saw
    it open and the one that saw it done, or, when the first poll already saw it done, only an
    upper bound (recorded a little below that bound). The first poll goes at a low quantile of
    the records; the spread of bracketed durations sets the interval near the likely finish.
    When most recent first polls found the task already done, the schedule is far too late (a
    server much faster than the contract), so the first poll jumps well below those bounds and
    the right time is found within a few tasks.
    """

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self._records: dict[tuple[str, str], deque[float]] = {}
        self._first_polls: dict[tuple[str, str], deque[tuple[float, bool]]] = {}
        self._lock = threading.Lock()

    def first_poll(self, key: tuple[str, str], elapsed: float, done: bool) -> None:
        """Learn from a task's first poll, `elapsed` seconds after it was created.

        Told at once, not when tasks end: with many tasks in flight, the quick ones end first,
        and waiting for completions would make the schedule look later than it is.
        """
        if elapsed <= 0 or not math.isfinite(elapsed):
            return
        with self._lock:
            self._first_polls.setdefault(key, deque(maxlen=self.policy.history)).append(
                (elapsed, done)
            )

    def record(self, key: tuple[str, str], seconds: float | None) -> None:
        """Learn a completed task's duration, bracketed by two polls (None: not bracketed)."""
        if seconds is None or seconds <= 0 or not math.isfinite(seconds):
            return
        with self._lock:
            self._records.setdefault(key, deque(maxlen=self.policy.history)).append(seconds)

    def samples(self, key: tuple[str, str]) -> list[float]:
        """Bracketed durations, sorted."""
        with self._lock:
            return sorted(self._records.get(key, ()))

    def plan(self, key: tuple[str, str], family: contract.Family | None, resolution: str) -> Plan:
        p = self.policy
        with self._lock:
            bracketed = sorted(self._records.get(key, ()))
            firsts = list(self._first_polls.get(key, ()))
        prior = contract.typical_seconds(family or "pro", resolution) * p.time_scale
        first = prior * p.first_factor
        if len(firsts) >= p.min_samples:
            # A task done at its first poll only says "at most this long" (left-censored), so
            # the wanted quantile of all tasks is a higher quantile of the bracketed ones; when
            # more than that share was done already, it lies below the first polls seen.
            done_early = sum(done for _, done in firsts) / len(firsts)
            if len(bracketed) >= p.min_samples and p.quantile < done_early < 1:
                seen = quantile(sorted(e for e, _ in firsts), 0.5)
                first = seen * math.exp(p.quantile - done_early)  # a little earlier
            elif len(bracketed) >= p.min_samples:
                first = quantile(bracketed, (p.quantile - done_early) / (1 - done_early))
        recent = firsts[-p.recent :]
        recent_bounds = [elapsed for elapsed, done in recent if done]
        if len(recent) >= p.min_samples and len(recent_bounds) >= p.probe_share * len(recent):
            first = min(first, min(recent_bounds) * p.probe_factor)  # far too late: probe earlier
        typical = first / p.first_factor
        if len(bracketed) >= p.min_samples:
            median = quantile(bracketed, 0.5)
            spread = quantile(bracketed, 0.9) - quantile(bracketed, 0.1)
            near = min(max(spread / p.spread_divisor, p.near_fraction * median / 4), p.near_max)
            late = max(quantile(bracketed, 0.9) * 1.25, median * p.late_factor)
            typical = max(typical, median)
        else:
            near = min(p.near_fraction * typical, p.near_max)
            late = typical * p.late_factor
        near = max(near, p.min_interval)
        cap = max(near, min(p.max_interval, typical))
        return Plan(first=first, near=near, late_after=max(late, first + near), cap=cap)


class PollSchedule:
    """The poll times of one wait. Ask `delay()` before each poll and `polled()` after it."""

    def __init__(
        self,
        policy: PollPolicy,
        plan: Plan,
        *,
        started: float,
        deadline: float,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.plan = plan
        self.started = started
        self.deadline = deadline
        self.clock = clock
        self.polls = 0
        self._late_polls = 0
        self._last_open: float | None = None  # elapsed time of the last poll that saw no end
        self.first_at: float | None = None  # elapsed time of the first poll

    def delay(self, retry_after: float | None = None) -> float:
        """Seconds to sleep before the next poll; never past the deadline."""
        now = self.clock()
        elapsed = now - self.started
        plan = self.plan
        if retry_after is not None:
            wait = retry_after
        elif self.polls == 0:
            wait = plan.first - elapsed
        elif elapsed < plan.late_after:
            wait = plan.near
        else:
            self._late_polls += 1
            wait = min(plan.cap, plan.near * self.policy.backoff**self._late_polls)
        if self.polls > 0:
            wait = max(wait, self.policy.min_interval)
        return max(0.0, min(wait, self.deadline - now))

    def polled(self, done: bool) -> None:
        self.polls += 1
        elapsed = self.clock() - self.started
        if self.polls == 1:
            self.first_at = elapsed
        if not done:
            self._last_open = elapsed

    def expired(self) -> bool:
        return self.clock() >= self.deadline

    def finished_after(self) -> float | None:
        """How long the task took, for learning: midway between the last poll that saw it open
        and the one that saw it done; None when the first poll already saw it done."""
        if self._last_open is None:
            return None
        return (self._last_open + self.clock() - self.started) / 2
