"""The best any poller can do: the optimal trade-off between status requests and detection lag.

Given the true distribution of generation times (the sandbox's own record of each task), a poll
schedule t1 < t2 < ... costs E[requests] = sum_k P(T > t_{k-1}) and E[lag] = E[t_K - T], where K
is the first poll at or after T. For a price `lam` per request the schedule minimising
E[lag] + lam * E[requests] is found by dynamic programming on a time grid; sweeping `lam` traces
the frontier. No poller, however clever, lies below it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def optimal_frontier(
    durations: Sequence[float], *, step: float = 0.02, lambdas: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """(requests per task, mean lag seconds) of the optimal schedule for each request price."""
    t = np.sort(np.asarray(durations, dtype=float))
    grid = np.arange(0.0, t[-1] + 2 * step, step)
    n = len(grid)
    # F(x) = P(T <= x), G(x) = E[T; T <= x], S(x) = P(T > x), all on the grid.
    idx = np.searchsorted(t, grid, side="right")
    cum = np.concatenate([[0.0], np.cumsum(t)])
    f = idx / len(t)
    g = cum[idx] / len(t)
    s = 1.0 - f
    points = []
    for lam in lambdas if lambdas is not None else np.geomspace(0.005, 5.0, 40):
        # W[i] = least cost-to-go, weighted by S(grid[i]), after a poll at grid[i] saw it open.
        w = np.zeros(n)
        nxt = np.full(n, n - 1)
        for i in range(n - 2, -1, -1):
            if s[i] <= 0:
                continue
            j = np.arange(i + 1, n)
            cost = lam * s[i] + grid[j] * (f[j] - f[i]) - (g[j] - g[i]) + w[j]
            k = int(np.argmin(cost))
            w[i] = cost[k]
            nxt[i] = j[k]
        points.append(evaluate(t, _walk(grid, nxt)))
    return _pareto(points)


def _walk(grid: np.ndarray, nxt: np.ndarray) -> list[float]:
    polls, i = [], 0
    while i < len(grid) - 1:
        i = int(nxt[i])
        polls.append(float(grid[i]))
    return polls


def evaluate(
    durations: Sequence[float] | np.ndarray, polls: Sequence[float]
) -> tuple[float, float]:
    """(requests per task, mean lag) of a fixed poll schedule against these durations."""
    schedule = np.asarray(polls)
    t = np.asarray(durations)
    k = np.searchsorted(schedule, t, side="left")  # index of the first poll at or after T
    k = np.minimum(k, len(schedule) - 1)
    return float(np.mean(k + 1)), float(np.mean(np.maximum(schedule[k] - t, 0.0)))


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    best: list[tuple[float, float]] = []
    for req, lag in sorted(points):
        if not best or lag < best[-1][1] - 1e-9:
            best.append((req, lag))
    return best


def lag_at(frontier: list[tuple[float, float]], requests: float) -> float:
    """The least mean lag the frontier allows for this many requests per task (interpolated)."""
    pts = sorted(frontier)
    if requests <= pts[0][0]:
        return pts[0][1]
    for (r0, l0), (r1, l1) in itertools.pairwise(pts):
        if r0 <= requests <= r1:
            return l0 + (l1 - l0) * (requests - r0) / (r1 - r0) if r1 > r0 else l1
    return pts[-1][1]
