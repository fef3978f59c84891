"""The poll schedule, driven by a fake clock: few polls, short detection lag, hard deadline."""

from __future__ import annotations

import random
import statistics

import pytest

from fluxclaw import contract
from fluxclaw.polling import DurationStats, PollPolicy, PollSchedule, optimal_offsets, quantile

KEY = ("flux-2-pro-text-to-image", "1k")


def run_tasks(
    policy: PollPolicy, durations: list[float], batch: int = 1
) -> tuple[list[int], list[float]]:
    """Simulate waits for tasks that take `durations` seconds, `batch` at a time sharing what
    was learned before them; returns polls and detection lags."""
    stats = DurationStats(policy)
    polls: list[int] = []
    lags: list[float] = []
    for start in range(0, len(durations), batch):
        learned = []
        for duration in durations[start : start + batch]:
            now = [0.0]
            plan = stats.plan(KEY, "pro", "1k")
            schedule = PollSchedule(
                policy, plan, started=0.0, deadline=600.0, clock=lambda now=now: now[0]
            )
            while True:
                now[0] += schedule.delay()
                done = now[0] >= duration
                schedule.polled(done)
                if done:
                    break
            assert schedule.first_at is not None
            learned.append(
                (
                    schedule.first_at,
                    schedule.polls == 1,
                    schedule.finished_after(),
                    schedule.bracket_width(),
                )
            )
            polls.append(schedule.polls)
            lags.append(now[0] - duration)
        for first_at, done_at_first, seconds, width in learned:
            stats.first_poll(KEY, first_at, done_at_first)
            stats.record(KEY, seconds, width)
    return polls, lags


def pro_durations(n: int, sigma: float = 0.08, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    median = contract.typical_seconds("pro", "1k")
    return [median * rng.lognormvariate(0, sigma) for _ in range(n)]


def test_beats_fixed_two_second_polling_for_pro() -> None:
    polls, lags = run_tasks(PollPolicy(), pro_durations(200))
    assert statistics.mean(polls) <= 3.5
    assert statistics.mean(lags) <= 0.5
    # RunAPI's SDK polls every 2 s: about 3 requests per 6 s image and a 1 s mean lag.


@pytest.mark.parametrize("sigma", [0.08, 0.25])
def test_concurrent_tasks_learn_without_collapsing(sigma: float) -> None:
    """Twenty tasks at a time finish together; the schedule must not lurch early or late."""
    polls, lags = run_tasks(PollPolicy(), pro_durations(400, sigma=sigma), batch=20)
    assert statistics.mean(polls[100:]) <= 3.6
    assert statistics.mean(lags[100:]) <= 0.5


def test_first_tasks_use_the_contract_time_before_anything_is_learned() -> None:
    policy = PollPolicy()
    plan = DurationStats(policy).plan(KEY, "pro", "1k")
    share = optimal_offsets(policy.prior_sigma, policy.price)[0]
    assert 0.6 < share < 0.95  # well before the usual time, since the spread is known
    assert plan.first == pytest.approx(6.0 * share)
    plan_2k = DurationStats(policy).plan(("x", "2k"), "flex", "2k")
    assert plan_2k.first == pytest.approx(contract.typical_seconds("flex", "2k") * share)


def test_time_scale_shrinks_the_whole_schedule() -> None:
    policy = PollPolicy(time_scale=0.01)
    plan = DurationStats(policy).plan(KEY, "pro", "1k")
    assert plan.first == pytest.approx(0.06 * optimal_offsets(policy.prior_sigma, policy.price)[0])
    assert plan.near == pytest.approx(policy.min_interval)
    assert plan.cap <= 0.06


def test_learning_adapts_to_a_server_much_faster_than_the_contract() -> None:
    durations = pro_durations(60, seed=3)
    fast = [d / 100 for d in durations]
    polls, lags = run_tasks(PollPolicy(), fast)
    assert statistics.mean(polls[20:]) <= 3.5
    assert statistics.mean(lags[20:]) <= 0.05  # seconds; the contract's first guess was 5.1 s
    assert lags[0] > 1  # before learning, the first poll comes at the contract's time


def test_backs_off_when_far_past_the_expected_time() -> None:
    now = [0.0]
    policy = PollPolicy()
    schedule = PollSchedule(
        policy,
        DurationStats(policy).plan(KEY, "pro", "1k"),
        started=0.0,
        deadline=600.0,
        clock=lambda: now[0],
    )
    gaps = []
    planned = len(schedule.plan.polls)
    for _ in range(planned + 12):
        gap = schedule.delay()
        gaps.append(gap)
        now[0] += gap
        schedule.polled(False)
    assert gaps[-1] == pytest.approx(schedule.plan.cap)
    assert all(0 < gap < 1 for gap in gaps[1:planned])  # close together where it likely ends
    past = gaps[planned:]
    assert sorted(past) == past and past[-1] > 4 * gaps[planned - 1]


def test_retry_after_wins_and_the_deadline_bounds_every_sleep() -> None:
    now = [0.0]
    policy = PollPolicy()
    schedule = PollSchedule(
        policy,
        DurationStats(policy).plan(KEY, "pro", "1k"),
        started=0.0,
        deadline=10.0,
        clock=lambda: now[0],
    )
    assert schedule.delay(retry_after=2.5) == 2.5
    now[0] = 9.0
    schedule.polled(False)
    assert schedule.delay(retry_after=30) == pytest.approx(1.0)
    now[0] = 10.0
    assert schedule.expired()
    assert schedule.delay() == 0


def test_presets_trade_polls_for_lag() -> None:
    outcome = {
        name: run_tasks(PollPolicy.preset(name), pro_durations(150, sigma=0.25))
        for name in ("eager", "balanced", "frugal")
    }
    polls = {name: statistics.mean(p) for name, (p, _) in outcome.items()}
    lags = {name: statistics.mean(lag) for name, (_, lag) in outcome.items()}
    assert polls["eager"] > polls["balanced"] > polls["frugal"]
    assert lags["eager"] < lags["balanced"] < lags["frugal"]
    assert max(lags.values()) <= 0.7


def test_optimal_offsets_follow_the_price_and_the_spread() -> None:
    cheap, dear = optimal_offsets(0.25, 0.005), optimal_offsets(0.25, 0.06)
    assert len(cheap) > len(dear)  # requests cost more: fewer of them
    assert cheap[0] < dear[0] < 1  # and the first one later, still before the median
    narrow, wide = optimal_offsets(0.1, 0.02), optimal_offsets(0.5, 0.02)
    assert wide[0] < narrow[0] and wide[-1] > narrow[-1]
    assert list(cheap) == sorted(cheap)


def test_preset_overrides_and_quantile() -> None:
    assert PollPolicy.preset("eager", time_scale=0.5).time_scale == 0.5
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert quantile([4.0], 0.9) == 4.0
