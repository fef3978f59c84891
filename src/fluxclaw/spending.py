"""Spending caps, kept where the money is spent: in the ledger's write of each new task.

A daily cap (`fluxclaw config --daily-budget USD`) and a batch's `--budget` are both checked in
the same SQLite write transaction that records the new task (`History.start(guard=...)`), so two
doors or processes at once cannot both slip under a cap. What counts is every row of the scope
that may still be charged: completed tasks at their charge, failed or refused ones at nothing,
and every other one (running, timed out, unanswered) at the estimate it was created under,
whatever the client gave up on. The daily scope is one API, whichever way its URL is spelt.
"""

from __future__ import annotations

import time

from fluxclaw import contract, errors
from fluxclaw.config import DAILY_BUDGET_KEY, daily_budget_from, load_config
from fluxclaw.history import Committed, Guard
from fluxclaw.pricing import CostEstimate

CONFIG_KEY = DAILY_BUDGET_KEY  # the config file's key for the cap (one definition: config)


def daily_budget() -> float | None:
    """The cap in US dollars from the config file, or None when there is none (a config file
    that cannot be read is an error, not a missing cap)."""
    return daily_budget_from(load_config())


def midnight(now: float | None = None) -> float:
    """The start of today, local time: what "daily" means to the person paying."""
    day = time.localtime(now)
    # mktime ignores the weekday and day of the year (today's are passed as they are); -1 lets
    # it find out whether summer time applies at that midnight.
    return time.mktime(
        (day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, day.tm_wday, day.tm_yday, -1)
    )


def guard(
    base_url: str,
    estimate: CostEstimate,
    *,
    batch: str | None = None,
    batch_budget_usd: float | None = None,
) -> Guard:
    """The check a new task's ledger row must pass: today's cap for its API, then its batch's
    budget. Raises `BudgetExceededError` (nothing is recorded or sent)."""
    cap = daily_budget()
    api = contract.canonical_base(base_url)
    cents = estimate.total_cents

    def check(committed: Committed) -> None:
        if cap is not None:
            if cents is None:
                raise errors.BudgetExceededError(
                    f"{estimate.model} has no known price, so the daily budget of ${cap:.2f} "
                    "cannot be kept; set its price (prices={'max': {'1k': cents}}) or remove "
                    "the budget with `fluxclaw config --daily-budget 0`.",
                )
            spent = committed(api=api, since=midnight())
            if spent + cents > round(cap * 100):
                raise errors.BudgetExceededError(
                    f"this image (${cents / 100:.2f}) would pass today's budget of "
                    f"${cap:.2f}: ${spent / 100:.2f} is already spent or running. Raise it "
                    "with `fluxclaw config --daily-budget USD`, or wait until midnight.",
                )
        if batch_budget_usd is not None and batch is not None:
            if cents is None:
                raise errors.BudgetExceededError(
                    f"{estimate.model} has no known price, so --budget cannot be kept"
                )
            spent = committed(batch=batch)
            if spent + cents > round(batch_budget_usd * 100):
                raise errors.BudgetExceededError(
                    f"would pass the budget of ${batch_budget_usd:.2f} "
                    f"(${spent / 100:.2f} spent or running in this batch)"
                )

    return check
