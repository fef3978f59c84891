"""A standing daily spending cap, kept by the job engine for every door alike.

`fluxclaw config --daily-budget USD` stores it; before any create that is recorded in a
history, the engine adds today's spend with this API (finished tasks at their cost, unfinished
ones at their estimate) to the new task's estimate and refuses the create, before it is sent,
if the sum would pass the cap. An agent in a loop therefore cannot run up a bill through the
CLI, the MCP server, the OpenClaw plugin or a batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fluxclaw import contract, errors
from fluxclaw.config import load_config
from fluxclaw.history import UNFINISHED
from fluxclaw.pricing import CostEstimate, estimate_cost

if TYPE_CHECKING:
    from fluxclaw.history import Entry, History

CONFIG_KEY = "daily_budget_usd"


def daily_budget() -> float | None:
    """The cap in US dollars from the config file, or None when there is none."""
    value = load_config().get(CONFIG_KEY)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def midnight(now: float | None = None) -> float:
    """The start of today, local time: what "daily" means to the person paying."""
    day = time.localtime(now)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


def spent_today(history: History, base_url: str) -> int:
    """Cents spent or committed today with this API: costs of finished tasks, estimates of
    tasks still running (they will be charged when they finish)."""
    return sum(_cents(entry) for entry in history.since(midnight(), base_url))


def _cents(entry: Entry) -> int:
    if entry.status not in UNFINISHED:
        return round((entry.cost or 0) * 100)  # finished: its charge (a failed task has none)
    if entry.cost is not None:
        return round(entry.cost * 100)  # paid, not yet saved
    resolution = str(entry.params.get("resolution") or contract.DEFAULT_RESOLUTION)
    try:
        guess = estimate_cost(entry.model or contract.DEFAULT_FAMILY, resolution)
    except errors.ValidationError:
        return 0
    return guess.total_cents or 0


def check(history: History | None, base_url: str, estimate: CostEstimate) -> None:
    """Refuse a create that would pass today's cap (nothing is recorded or sent)."""
    if history is None:
        return  # no history, nothing to count spend from (the cap is a history-backed door's)
    cap = daily_budget()
    if cap is None:
        return
    cap_cents = round(cap * 100)
    if estimate.total_cents is None:
        raise errors.BudgetExceededError(
            f"{estimate.model} has no known price, so the daily budget of ${cap:.2f} cannot be "
            "kept; set its price (prices={'max': {'1k': cents}}) or remove the budget with "
            "`fluxclaw config --daily-budget 0`.",
        )
    spent = spent_today(history, base_url)
    if spent + estimate.total_cents > cap_cents:
        raise errors.BudgetExceededError(
            f"this image (${estimate.total_cents / 100:.2f}) would pass today's budget of "
            f"${cap:.2f}: ${spent / 100:.2f} is already spent or running. Raise it with "
            "`fluxclaw config --daily-budget USD`, or wait until midnight.",
        )
