"""When to ask about a task again: pure logic, no I/O, shared by the sync and async clients.

Generation times are spread around a model's usual time, so a poll schedule trades status
requests against detection lag (how late a finished task is noticed). For a known distribution
of generation times there is an optimal schedule for each price of a request in seconds of lag;
this module computes it (dynamic programming over a lognormal fitted to what this client has
seen, per model and resolution), so the polls come rarely while a task cannot be done yet and
often where it most likely ends. Before anything is learned the fit starts from the contract's
usual time, scaled by the pace the server states (a sandbox's speed header) unless the user set
`time_scale`; a server much faster than the contract that says nothing is found out within a
few tasks. A server's Retry-After always wins, a hard deadline bounds the whole wait, and no
schedule, setting or server polls one task more often than every POLL_FLOOR seconds.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, NamedTuple

from fluxclaw import contract

Preset = Literal["eager", "balanced", "frugal"]


def _normal_cdf(z: float) -> float:
    """The standard normal CDF, NormalDist's own formula: statistics costs a cold process ~2.5 ms
    of imports (fractions, decimal), and only a fit (`inv_cdf`) needs it."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# The shortest time between two polls of one task, whatever the policy or a server says.
POLL_FLOOR: Final = 0.01


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Knobs of the poll schedule; `PollPolicy.preset("eager"|"balanced"|"frugal")` for presets.

    Times are seconds. `price` is what one status request is worth, in lag, as a share of the
    usual generation time: lower polls more and notices sooner. `time_scale` multiplies the
    contract's typical times (a sandbox at speed=100 wants 0.01), so the schedule is right from
    the first task, not only after learning. Left at None it follows the server: 1/speed from
    the first answer that states a speed (the sandbox's X-Fluxclaw-Sandbox-Speed header), else
    1; a number given here always wins over what the server says. `min_interval` is never
    taken below POLL_FLOOR.
    """

    price: float = 0.02
    prior_sigma: float = 0.25  # spread (of log durations) assumed before anything is learned
    min_sigma: float = 0.05
    max_sigma: float = 1.0
    backoff: float = 1.5  # past the planned polls, intervals grow by this factor...
    max_interval: float = 5.0  # ...up to this (and never longer than one typical duration)
    min_interval: float = POLL_FLOOR
    time_scale: float | None = None
    history: int = 128  # durations remembered per model and resolution
    window: int = 64  # recent first polls that say which share is done at the first poll
    min_samples: int = 8  # durations needed before the fit replaces the contract's time
    probe_share: float = 1.0  # when this share of recent first polls saw the task done...
    probe_factor: float = 0.3  # ...the first poll moves to this share of the earliest of them
    recent: int = 16  # how many recent first polls that check looks at (at least min_probe)
    min_probe: int = 3

    @classmethod
    def preset(cls, name: Preset, **changes: float | int) -> PollPolicy:
        return replace(_PRESETS[name], **changes)  # type: ignore[arg-type]


_PRESETS: dict[str, PollPolicy] = {
    "eager": PollPolicy(price=0.005),
    "balanced": PollPolicy(),
    "frugal": PollPolicy(price=0.06),
}


class Plan(NamedTuple):
    """Where to poll for one task: the planned poll times (seconds after creation, the first
    being `first`), the interval used after them (`near`, growing to `cap`), and `late_after`,
    the end of the plan, past which the task is late."""

    first: float
    near: float
    late_after: float
    cap: float
    polls: tuple[float, ...] = ()


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted `values` (at least one)."""
    pos = q * (len(values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


@functools.lru_cache(maxsize=512)
def optimal_offsets(sigma: float, price: float, steps: int = 160) -> tuple[float, ...]:
    """Poll times, as multiples of the median, that minimise E[lag] + price * E[polls] when
    durations are lognormal with this sigma (bench/frontier.py checks them against measured
    durations). Dynamic programming on a grid up to exp(4 sigma), past which 3e-5 of tasks end.
    """
    top = math.exp(4 * sigma)
    xs = [top * i / steps for i in range(steps + 1)]
    shift = math.exp(sigma * sigma / 2)
    # cdf[i] = P(T <= x), part[i] = E[T; T <= x] for T lognormal(0, sigma).
    cdf = [0.0] + [_normal_cdf(math.log(x) / sigma) for x in xs[1:]]
    part = [0.0] + [shift * _normal_cdf(math.log(x) / sigma - sigma) for x in xs[1:]]
    cost = [0.0] * (steps + 1)  # least cost to go after a poll at xs[i] found the task open
    after = [steps] * (steps + 1)
    for i in range(steps - 1, -1, -1):
        f, g = cdf[i], part[i]
        best, arg = math.inf, steps
        for j in range(i + 1, steps + 1):
            c = xs[j] * (cdf[j] - f) - (part[j] - g) + cost[j]
            if c < best:
                best, arg = c, j
        cost[i] = price * (1 - f) + best
        after[i] = arg
    offsets, i = [], 0
    while i < steps:
        i = after[i]
        offsets.append(xs[i])
    return tuple(offsets)


class DurationStats:
    """What this client learned about generation times, per (model id, resolution).

    Two records per key: every first poll (when, and whether it found the task done), and the
    durations of tasks it did not find done, bracketed between the last poll that saw them open
    and the one that saw them done. A lognormal is fitted to both: the share done at the first
    poll places the lower part (those tasks are left-censored: we only know they took less), the
    bracketed durations the rest. When nearly all recent first polls found the task done, the
    schedule is far too late (a server much faster than the contract), so the first poll jumps
    well below them and the right time is found within a few tasks.
    """

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self._records: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._first_polls: dict[tuple[str, str], deque[tuple[float, bool]]] = {}
        self._rescaled: dict[tuple[str, str], float] = {}  # median found by probing
        self._server_speed: float | None = None
        self._lock = threading.Lock()
        # A fit reads every record (an inverse normal CDF each), and many tasks plan between
        # two changes: it is kept until something it reads changes (`_changed`).
        self._version = 0
        self._fits: dict[tuple[tuple[str, str], float], tuple[int, tuple[float, float]]] = {}

    def _changed(self) -> None:
        """Something a fit reads changed (called under the lock): kept fits are stale."""
        self._version += 1

    @property
    def server_speed(self) -> float | None:
        """The speed the server last stated (see `heard`), or None."""
        return self._server_speed

    @property
    def time_scale(self) -> float:
        """What the contract's typical times are multiplied by: the policy's `time_scale` if the
        user set one, else 1/the speed the server stated, else 1."""
        if self.policy.time_scale is not None:
            return self.policy.time_scale
        speed = self._server_speed
        return 1.0 if speed is None else 1.0 / speed

    def heard(self, speed: float | None) -> None:
        """Adopt the speed an answer stated (`contract.sandbox_speed`; None: it stated none or
        nonsense, which changes nothing). What was learned at another stated speed is forgotten:
        those durations describe a server that no longer runs at that pace."""
        if speed is None or speed == self._server_speed:
            return
        with self._lock:
            if self._server_speed is not None:
                self._records.clear()
                self._first_polls.clear()
                self._rescaled.clear()
            self._server_speed = speed
            self._changed()

    def snapshot(self, key: tuple[str, str]) -> dict[str, Any]:
        """What was learned for `key`, JSON-ready, so another process can start from it."""
        with self._lock:
            return {
                "records": [list(item) for item in self._records.get(key, ())],
                "first_polls": [list(item) for item in self._first_polls.get(key, ())],
                "rescaled": self._rescaled.get(key),
            }

    def restore(self, key: tuple[str, str], data: Mapping[str, Any]) -> None:
        """Start `key` from a `snapshot` (another process's), unless this one already learned
        something of its own; anything malformed is ignored."""
        limit = self.policy.history
        try:
            records = [(float(s), float(w)) for s, w in data.get("records") or ()]
            firsts = [(float(e), bool(d)) for e, d in data.get("first_polls") or ()]
            rescaled = data.get("rescaled")
            median = float(rescaled) if rescaled is not None else None
        except (TypeError, ValueError):
            return
        ok = [x for x in records if x[0] > 0 and math.isfinite(x[0]) and math.isfinite(x[1])]
        early = [x for x in firsts if x[0] > 0 and math.isfinite(x[0])]
        with self._lock:
            if key in self._records or key in self._first_polls:
                return
            if ok:
                self._records[key] = deque(ok, maxlen=limit)
            if early:
                self._first_polls[key] = deque(early, maxlen=limit)
            if median is not None and median > 0 and math.isfinite(median):
                self._rescaled[key] = median
            self._changed()

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
            self._changed()

    def record(self, key: tuple[str, str], seconds: float | None, width: float = 0.0) -> None:
        """Learn a completed task's duration, bracketed by two polls `width` seconds apart
        (None: not bracketed)."""
        if seconds is None or seconds <= 0 or not math.isfinite(seconds):
            return
        with self._lock:
            self._records.setdefault(key, deque(maxlen=self.policy.history)).append(
                (seconds, max(0.0, width))
            )
            self._changed()

    def fit(self, key: tuple[str, str], prior: float) -> tuple[float, float]:
        """(median, sigma) of a lognormal fitted to what was seen; the prior until enough is."""
        with self._lock:
            version = self._version
            kept = self._fits.get((key, prior))
        if kept is not None and kept[0] == version:
            return kept[1]
        fitted = self._fit(key, prior)
        with self._lock:
            if len(self._fits) > 64:  # a few keys and priors in any one process
                self._fits.clear()
            self._fits[(key, prior)] = (version, fitted)
        return fitted

    def _fit(self, key: tuple[str, str], prior: float) -> tuple[float, float]:
        p = self.policy
        with self._lock:
            records = list(self._records.get(key, ()))
            firsts = list(self._first_polls.get(key, ()))[-p.window :]
            prior = self._rescaled.get(key, prior)
        bracketed = sorted(seconds for seconds, _ in records)
        if len(bracketed) < max(p.min_samples, 1) or not firsts:
            return prior, p.prior_sigma
        done = sum(d for _, d in firsts) / len(firsts)
        done = min(max(done, 0.5 / len(firsts)), 0.95)
        # Points (normal score, log duration): the bracketed durations fill the share of tasks
        # not done at the first poll; the first polls themselves mark the share done by then.
        # A fit is rare; statistics stays off the cold path.
        from statistics import NormalDist, fmean, linear_regression

        normal = NormalDist()
        n = len(bracketed)
        zs = [normal.inv_cdf(done + (1 - done) * (k + 0.5) / n) for k in range(n)]
        ys = [math.log(b) for b in bracketed]
        weight = max(1, n // 4)  # the first polls count as a quarter of the durations
        zs += [normal.inv_cdf(done)] * weight  # below every duration's score: a line exists
        ys += [math.log(quantile(sorted(e for e, _ in firsts), 0.5))] * weight
        slope = linear_regression(zs, ys).slope
        # A midpoint is off by up to half its bracket, which widens the fit: take that out.
        blur = sum((w / t) ** 2 for t, w in records) / (12 * len(records))
        sigma = math.sqrt(max(slope * abs(slope) - blur, 0.0))
        sigma = min(max(sigma, p.min_sigma), p.max_sigma)
        return math.exp(fmean(ys) - sigma * fmean(zs)), sigma

    def plan(self, key: tuple[str, str], family: contract.Family | None, resolution: str) -> Plan:
        p = self.policy
        prior = (
            contract.typical_seconds(family or contract.DEFAULT_FAMILY, resolution)
            * self.time_scale
        )
        median, sigma = self.fit(key, prior)
        offsets = optimal_offsets(round(sigma * 20) / 20, p.price)  # 0.05 steps: few DP runs
        with self._lock:
            recent = list(self._first_polls.get(key, ()))[-p.recent :]
        bounds = [elapsed for elapsed, done in recent if done]
        if len(recent) >= p.min_probe and len(bounds) >= p.probe_share * len(recent):
            # Far too late (the server got much faster): probe earlier, and forget the older
            # records, which would otherwise keep pulling the schedule back.
            median = min(median, min(bounds) * p.probe_factor / offsets[0])
            with self._lock:
                self._first_polls[key] = deque(recent, maxlen=p.history)
                self._records.pop(key, None)
                self._rescaled[key] = median
                self._changed()
        polls = tuple(max(median * x, POLL_FLOOR) for x in offsets)
        floor = max(p.min_interval, POLL_FLOOR)
        near = max(polls[-1] - (0.0, *polls)[-2], floor)  # the last gap (from creation, if one)
        cap = max(near, min(p.max_interval, median))
        return Plan(first=polls[0], near=near, late_after=polls[-1], cap=cap, polls=polls)


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
        elif self.polls < len(plan.polls):
            wait = plan.polls[self.polls] - elapsed
        elif elapsed < plan.late_after:
            wait = plan.near
        else:
            self._late_polls += 1
            wait = min(plan.cap, plan.near * self.policy.backoff**self._late_polls)
        if self.polls > 0:
            wait = max(wait, self.policy.min_interval, POLL_FLOOR)
        return max(0.0, min(wait, self.deadline - now))

    def polled(self, done: bool) -> None:
        self.polls += 1
        elapsed = self.clock() - self.started
        if self.polls == 1:
            self.first_at = elapsed
        if not done:
            self._last_open = elapsed

    def expired(self) -> bool:
        """Whether the wait is over: also when less than POLL_FLOOR is left, so that a last poll
        squeezed in before the deadline never comes sooner than the floor allows."""
        return self.clock() > self.deadline - POLL_FLOOR

    def bracket_width(self) -> float:
        """Seconds between the last poll that saw the task open and the one that saw it done."""
        if self._last_open is None:
            return 0.0
        return self.clock() - self.started - self._last_open

    def finished_after(self) -> float | None:
        """How long the task took, for learning: midway between the last poll that saw it open
        and the one that saw it done; None when the first poll already saw it done."""
        if self._last_open is None:
            return None
        return (self._last_open + self.clock() - self.started) / 2
