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
    quantile: float = 0.25  # learned: first poll where this share of tasks is already done
    near_fraction: float = 0.1  # interval near the likely finish, as a share of the typical time
    near_max: float = 2.0  # never wait longer than this between polls near the likely finish
    late_factor: float = 1.5  # past this multiple of the typical time, back off...
    backoff: float = 1.5  # ...geometrically by this factor...
    max_interval: float = 5.0  # ...up to this (and never longer than one typical duration)
    min_interval: float = 0.01
    time_scale: float = 1.0
    history: int = 128  # durations and first polls remembered per model and resolution
    probe_share: float = 0.9  # when this share of recent first polls saw the task done...
    probe_factor: float = 0.3  # ...the first poll moves to this share of the earliest of them
    recent: int = 16  # how many recent first polls that check looks at
    window: int = 32  # how many recent first polls say which share is done at the first poll
    spread_divisor: float = 4.0  # near-finish interval = spread (p90 - p10) / this
    min_samples: int = 3  # durations needed before the learned first poll replaces the contract's
    spread_samples: int = 16  # durations needed before their spread sets the interval

    @classmethod
    def preset(cls, name: Preset, **changes: float | int) -> PollPolicy:
        base = _PRESETS[name]
        return replace(base, **changes) if changes else base  # type: ignore[arg-type]


_PRESETS: dict[str, PollPolicy] = {
    "eager": PollPolicy(first_factor=0.75, quantile=0.15, near_fraction=0.05, spread_divisor=8.0),
    "balanced": PollPolicy(),
    "frugal": PollPolicy(first_factor=0.9, quantile=0.4, near_fraction=0.15, spread_divisor=2.0),
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

    Two records per key: every first poll (when, and whether it found the task done), and the
    durations of tasks it did not find done, bracketed between the last poll that saw them open
    and the one that saw them done. A task done at its first poll is left-censored (we only know
    it took less), so the first poll goes where the wanted share of all tasks is done: a higher
    quantile of the bracketed durations, after the share done early. The spread of those
    durations sets the interval near the likely finish. When nearly all recent first polls found
    the task done, the schedule is far too late (a server much faster than the contract), so the
    first poll jumps well below them and the right time is found within a few tasks.
    Parameters were tuned against the optimal poll schedule (bench/frontier.py).
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
            window = firsts[-p.window :]
            done_early = sum(done for _, done in window) / len(window)
            if done_early > p.quantile:
                seen = quantile(sorted(e for e, _ in firsts[-p.recent :]), 0.5)
                first = seen * math.exp(p.quantile - done_early)  # somewhat earlier
            elif len(bracketed) >= p.min_samples:
                first = quantile(bracketed, (p.quantile - done_early) / (1 - done_early))
        recent = firsts[-p.recent :]
        recent_bounds = [elapsed for elapsed, done in recent if done]
        if len(recent) >= p.min_samples and len(recent_bounds) >= p.probe_share * len(recent):
            # Far too late (the server got much faster): probe earlier, and forget the older
            # first polls, which would otherwise keep pulling the schedule back.
            first = min(first, min(recent_bounds) * p.probe_factor)
            with self._lock:
                kept = list(self._first_polls.get(key, ()))[-p.recent :]
                self._first_polls[key] = deque(kept, maxlen=p.history)
        typical = first / p.first_factor
        if len(bracketed) >= p.spread_samples:
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
