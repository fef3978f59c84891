"""The poll schedule's numbers, worked out here independently of the code that makes them: the
schedule's cost from the lognormal's own formulas, the fit as a least-squares line from the
standard library, the plan and each wait from the policy's published knobs (issue 25)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pytest

from fluxclaw import contract
from fluxclaw.polling import (
    POLL_FLOOR,
    DurationStats,
    Plan,
    PollPolicy,
    PollSchedule,
    optimal_offsets,
    quantile,
)

KEY = ("flux-2-pro-text-to-image", "1k")
NORMAL = statistics.NormalDist()
STEPS = 160


def expected_cost(polls: Sequence[float], sigma: float, price: float) -> float:
    """E[lag] + price * E[polls] for durations lognormal(0, sigma) (times in medians), polled at
    `polls`: a poll is made when the task was still open at the one before, and a task ending
    between two polls is seen at the second."""
    shift = math.exp(sigma * sigma / 2)

    def done_by(x: float) -> float:  # P(T <= x)
        return 0.0 if x <= 0 else NORMAL.cdf(math.log(x) / sigma)

    def mass_by(x: float) -> float:  # E[T; T <= x], the lognormal's partial expectation
        return 0.0 if x <= 0 else shift * NORMAL.cdf(math.log(x) / sigma - sigma)

    cost, before = 0.0, 0.0
    for at in polls:
        cost += price * (1 - done_by(before))
        cost += at * (done_by(at) - done_by(before)) - (mass_by(at) - mass_by(before))
        before = at
    return cost


@pytest.mark.parametrize(("sigma", "price"), [(0.25, 0.02), (0.1, 0.005), (0.5, 0.06)])
def test_no_poll_can_move_be_dropped_or_be_added_for_a_lower_cost(
    sigma: float, price: float
) -> None:
    optimal_offsets.cache_clear()  # worked out now, not kept from an earlier call
    offsets = list(optimal_offsets(sigma, price))
    top = math.exp(4 * sigma)
    grid = [top * i / STEPS for i in range(STEPS + 1)]
    assert offsets[-1] == pytest.approx(top)  # the grid ends where 3e-5 of tasks are still open
    assert all(any(math.isclose(x, g) for g in grid) for x in offsets)
    best = expected_cost(offsets, sigma, price)
    tried = 0
    for k in range(len(offsets) - 1):
        dropped = offsets[:k] + offsets[k + 1 :]
        assert expected_cost(dropped, sigma, price) >= best - 1e-12
        for step in (-1, 1):
            moved = [*offsets[:k], offsets[k] + step * top / STEPS, *offsets[k + 1 :]]
            if moved == sorted(set(moved)) and moved[0] > 0:
                assert expected_cost(moved, sigma, price) >= best - 1e-12
                tried += 1
    for g in grid[1:]:
        if not any(math.isclose(g, x) for x in offsets):
            added = sorted([*offsets, g])
            assert expected_cost(added, sigma, price) >= best - 1e-12
    assert tried > len(offsets)
    # And it beats the plain ways of polling by a margin.
    for interval in (0.1, 0.25, 1 / 3):
        fixed = [interval * n for n in range(1, math.ceil(top / interval) + 1)]
        assert expected_cost(fixed, sigma, price) > best * 1.05


def test_the_balanced_schedule_for_the_contracts_first_guess() -> None:
    """Pro at 1k, nothing learned: median 6 s, spread 0.25; the plan's numbers follow."""
    offsets = optimal_offsets(0.25, 0.02)
    plan = DurationStats(PollPolicy()).plan(KEY, "pro", "1k")
    assert plan.polls == pytest.approx([6.0 * x for x in offsets])
    assert plan.late_after == pytest.approx(6.0 * math.exp(1.0))
    assert plan.near == pytest.approx(6.0 * (offsets[-1] - offsets[-2]))
    assert plan.cap == 5.0  # max_interval, below one typical duration
    # A model without a family falls back to the default family's time.
    assert DurationStats(PollPolicy()).plan(KEY, None, "1k") == plan


def test_when_requests_cost_a_fortune_one_poll_at_the_plans_end() -> None:
    plan = DurationStats(PollPolicy(price=1e5)).plan(KEY, "pro", "1k")
    end = 6.0 * math.exp(1.0)
    assert plan.polls == pytest.approx([end])
    assert plan.near == pytest.approx(end) and plan.cap == pytest.approx(end)  # from creation


def test_the_cap_is_one_typical_duration_when_that_is_shorter() -> None:
    plan = DurationStats(PollPolicy(time_scale=0.5)).plan(KEY, "pro", "1k")
    assert plan.cap == pytest.approx(3.0)
    tiny = DurationStats(PollPolicy(time_scale=1e-4, min_interval=0.05)).plan(KEY, "pro", "1k")
    assert tiny.near == 0.05 and tiny.cap == 0.05  # never below the interval asked for
    assert all(x >= POLL_FLOOR for x in tiny.polls) and tiny.first == POLL_FLOOR


# -- the fit: a least-squares line through (normal score, log duration) -------------------------


def exact_sample(
    median: float, sigma: float, n: int, done_share: float
) -> tuple[float, list[float]]:
    """The first-poll time at which `done_share` of tasks are done, and the n durations of the
    rest, at evenly spread quantiles: a sample the fit should read back exactly."""
    at_first = median * math.exp(sigma * NORMAL.inv_cdf(done_share))
    rest = [
        median * math.exp(sigma * NORMAL.inv_cdf(done_share + (1 - done_share) * (k + 0.5) / n))
        for k in range(n)
    ]
    return at_first, rest


def learn(
    stats: DurationStats,
    firsts: list[tuple[float, bool]],
    durations: list[float],
    width: float = 0.0,
) -> None:
    for elapsed, done in firsts:
        stats.first_poll(KEY, elapsed, done)
    for seconds in durations:
        stats.record(KEY, seconds, width * seconds)


def show(stats: DurationStats, median: float, sigma: float, width: float = 0.0) -> None:
    """Teach `stats` a lognormal sample it should read back exactly: 32 durations, and 32 first
    polls made when a quarter of tasks are done, 8 of which found theirs done."""
    at_first, rest = exact_sample(median, sigma, 32, 0.25)
    learn(stats, [(at_first, True)] * 8 + [(at_first, False)] * 24, rest, width)


def test_a_fit_reads_back_the_distribution_it_was_shown() -> None:
    stats = DurationStats(PollPolicy())
    show(stats, 4.0, 0.2)
    median, sigma = stats.fit(KEY, prior=6.0)
    assert median == pytest.approx(4.0, rel=1e-9)
    assert sigma == pytest.approx(0.2, rel=1e-9)


def test_a_fit_takes_the_bracket_blur_out_of_the_spread() -> None:
    """A duration known to within a bracket 0.3 of its length wide is off by a uniform error of
    variance 0.3**2/12 (relative): that much is taken out of sigma squared."""
    stats = DurationStats(PollPolicy())
    show(stats, 4.0, 0.2, width=0.3)
    _, sigma = stats.fit(KEY, prior=6.0)
    assert sigma == pytest.approx(math.sqrt(0.2**2 - 0.3**2 / 12), rel=1e-9)


def least_squares(
    points: list[tuple[float, float]], low: float, high: float
) -> tuple[float, float]:
    """(median, sigma) of the least-squares line through `points` (by the standard library),
    its slope kept within [low, high] and turned about the points' centre."""
    zs, ys = [z for z, _ in points], [y for _, y in points]
    slope = min(max(statistics.linear_regression(zs, ys).slope, low), high)
    return math.exp(statistics.fmean(ys) - slope * statistics.fmean(zs)), slope


@pytest.mark.parametrize(
    ("done", "total", "n", "weight"),
    [(3, 40, 20, 5), (0, 40, 20, 5), (40, 40, 20, 5), (12, 16, 20, 5), (2, 4, 5, 1), (1, 2, 1, 1)],
)
def test_a_fit_weighs_the_first_polls_as_a_quarter_of_the_durations(
    done: int, total: int, n: int, weight: int
) -> None:
    """Durations and first polls that disagree: the fit is the least-squares line through the
    durations at their quantiles (above the share done at the first poll, which is kept between
    half a poll's worth and 95%) and the first polls' median time, counted n // 4 times (once
    at least)."""
    durations = [3.0 + 0.25 * k + 0.01 * k * k for k in range(n)]
    elapsed = [1.0 + 0.1 * k for k in range(total)]  # median interpolated between two
    firsts = [(e, k < done) for k, e in enumerate(elapsed)]
    stats = DurationStats(PollPolicy(min_samples=min(n, 8)))
    learn(stats, firsts, durations)
    share = min(max(done / total, 0.5 / total), 0.95)
    points = [
        (NORMAL.inv_cdf(share + (1 - share) * (k + 0.5) / n), math.log(d))
        for k, d in enumerate(sorted(durations))
    ]
    points += [(NORMAL.inv_cdf(share), math.log(statistics.median(elapsed)))] * weight
    assert stats.fit(KEY, prior=6.0) == pytest.approx(least_squares(points, 0.05, 1.0), rel=1e-9)


def test_a_fit_reads_only_the_last_window_of_first_polls() -> None:
    stats = DurationStats(PollPolicy(window=32))
    learn(stats, [(50.0, False)] * 40, [])  # older than the window: ignored
    show(stats, 4.0, 0.2)
    assert stats.fit(KEY, prior=6.0) == pytest.approx((4.0, 0.2), rel=1e-9)


def test_no_fit_before_min_samples_durations_and_a_first_poll() -> None:
    at_first, rest = exact_sample(4.0, 0.2, 8, 0.25)
    policy = PollPolicy()
    few = DurationStats(policy)
    learn(few, [(at_first, True), (at_first, False)], rest[:7])
    assert few.fit(KEY, prior=6.0) == (6.0, policy.prior_sigma)
    no_firsts = DurationStats(policy)
    learn(no_firsts, [], rest)
    assert no_firsts.fit(KEY, prior=6.0) == (6.0, policy.prior_sigma)
    enough = DurationStats(policy)
    learn(enough, [(at_first, True), (at_first, False)], rest)
    assert enough.fit(KEY, prior=6.0) != (6.0, policy.prior_sigma)
    # Asked to fit from nothing, it still needs one duration to draw a line through.
    eager = DurationStats(PollPolicy(min_samples=0))
    learn(eager, [(at_first, True), (at_first, False)], [])
    assert eager.fit(KEY, prior=6.0) == (6.0, policy.prior_sigma)


@pytest.mark.parametrize(("spread", "sigma"), [(0.0, 0.05), (3.0, 1.0)])
def test_the_fitted_spread_is_kept_within_the_policys_bounds(spread: float, sigma: float) -> None:
    durations = [5.0 * math.exp(spread * (k - 10) / 10) for k in range(20)]
    stats = DurationStats(PollPolicy())
    learn(stats, [(5.0, False), (5.0, True)], durations)
    assert stats.fit(KEY, prior=6.0)[1] == sigma


def test_a_fit_is_kept_until_something_it_reads_changes() -> None:
    stats = DurationStats(PollPolicy())
    show(stats, 4.0, 0.2)
    kept = stats.fit(KEY, prior=6.0)
    assert kept == pytest.approx((4.0, 0.2))
    assert stats.fit(KEY, prior=6.0) is kept  # not worked out again
    assert stats.fit(KEY, prior=7.0) is not kept
    stats.record(KEY, 400.0)
    assert stats.fit(KEY, prior=6.0)[1] > 0.3


# -- what is learned, and what is not ----------------------------------------------------------


def test_nonsense_is_not_learned() -> None:
    stats = DurationStats(PollPolicy())
    for elapsed in (0.0, -1.0, math.inf, math.nan):
        stats.first_poll(KEY, elapsed, True)
    for seconds in (None, 0.0, -2.0, math.inf, math.nan):
        stats.record(KEY, seconds, 1.0)
    assert stats.snapshot(KEY) == {"records": [], "first_polls": [], "rescaled": None}
    stats.record(KEY, 2.0, -1.0)  # a negative bracket is none
    stats.first_poll(KEY, 1.5, False)
    assert stats.snapshot(KEY) == {
        "records": [[2.0, 0.0]],
        "first_polls": [[1.5, False]],
        "rescaled": None,
    }


def test_history_keeps_the_latest_records() -> None:
    stats = DurationStats(PollPolicy(history=3))
    for k in range(1, 6):
        stats.record(KEY, float(k), 0.5)
        stats.first_poll(KEY, float(k), k % 2 == 0)
    snap = stats.snapshot(KEY)
    assert snap["records"] == [[3.0, 0.5], [4.0, 0.5], [5.0, 0.5]]
    assert snap["first_polls"] == [[3.0, False], [4.0, True], [5.0, False]]


def test_a_snapshot_starts_another_process_where_this_one_was() -> None:
    source = DurationStats(PollPolicy())
    for k in range(1, 4):
        source.record(KEY, float(k), 0.25)
        source.first_poll(KEY, 0.5 * k, k == 1)
    snap = source.snapshot(KEY)
    target = DurationStats(PollPolicy(history=2))
    target.restore(KEY, {**snap, "rescaled": 2.5})
    assert (
        target.snapshot(KEY)
        == {
            "records": snap["records"][-2:],  # its own history's length
            "first_polls": snap["first_polls"][-2:],
            "rescaled": 2.5,
        }
    )
    # What a process learned itself is not replaced by another's.
    target.restore(KEY, {"records": [[9.0, 0.0]], "first_polls": [], "rescaled": 7.0})
    assert target.snapshot(KEY)["records"] == snap["records"][-2:]
    assert target.snapshot(KEY)["rescaled"] == 2.5


@pytest.mark.parametrize(
    "data",
    [
        {"records": [["x", 1]]},
        {"records": [[1.0]]},
        {"first_polls": [[None, True]]},
        {"records": [[1.0, 0.0]], "rescaled": "soon"},
        {"records": 5},
    ],
)
def test_a_malformed_snapshot_is_ignored_whole(data: dict[str, object]) -> None:
    stats = DurationStats(PollPolicy())
    stats.restore(KEY, data)
    assert stats.snapshot(KEY) == {"records": [], "first_polls": [], "rescaled": None}


def test_a_snapshots_impossible_values_are_dropped_one_by_one() -> None:
    stats = DurationStats(PollPolicy())
    stats.restore(
        KEY,
        {
            "records": [[0, 0], [-1, 0.5], ["inf", 0], [2, "nan"], ["3", "0.5"], [0.5, 0]],
            "first_polls": [[0, True], ["nan", False], ["inf", True], [1.25, 1], [0.5, 0]],
            "rescaled": "-4",
        },
    )
    assert stats.snapshot(KEY) == {
        "records": [[3.0, 0.5], [0.5, 0.0]],
        "first_polls": [[1.25, True], [0.5, False]],
        "rescaled": None,
    }
    bare = DurationStats(PollPolicy())
    bare.restore(KEY, {"records": [[2.0, 0.0]]})  # no median found by probing: none needed
    assert bare.snapshot(KEY) == {"records": [[2.0, 0.0]], "first_polls": [], "rescaled": None}
    small = DurationStats(PollPolicy())
    small.restore(KEY, {"rescaled": 0.5})
    assert small.snapshot(KEY)["rescaled"] == 0.5
    for bad in ("0", "inf", "nan"):
        other = DurationStats(PollPolicy())
        other.restore(KEY, {"rescaled": bad})
        assert other.snapshot(KEY)["rescaled"] is None
    kept = DurationStats(PollPolicy())
    kept.restore(KEY, {"first_polls": [[1.0, False]]})
    kept.restore(KEY, {"records": [[4.0, 0.0]]})  # it has first polls of its own now
    assert kept.snapshot(KEY)["records"] == []


def test_a_restored_median_moves_the_plan() -> None:
    stats = DurationStats(PollPolicy())
    stats.restore(KEY, {"rescaled": 2.0})
    plan = stats.plan(KEY, "pro", "1k")
    assert plan.first == pytest.approx(2.0 * optimal_offsets(0.25, 0.02)[0])


def test_a_stated_speed_scales_the_plan_and_a_new_one_forgets_what_was_learned() -> None:
    stats = DurationStats(PollPolicy())
    assert stats.time_scale == 1.0 and stats.server_speed is None
    stats.heard(None)
    assert stats.server_speed is None
    stats.record(KEY, 5.0)
    stats.first_poll(KEY, 4.0, False)
    stats.heard(10.0)  # the first stated speed: what was learned stays
    assert stats.time_scale == pytest.approx(0.1) and stats.server_speed == 10.0
    assert stats.snapshot(KEY)["records"] == [[5.0, 0.0]]
    stats.heard(10.0)
    assert stats.snapshot(KEY)["first_polls"] == [[4.0, False]]
    stats.heard(None)  # an answer that says nothing changes nothing
    assert stats.server_speed == 10.0
    stats.heard(20.0)
    assert stats.snapshot(KEY) == {"records": [], "first_polls": [], "rescaled": None}
    assert stats.time_scale == pytest.approx(0.05)
    first = optimal_offsets(0.25, 0.02)[0]
    assert stats.plan(KEY, "pro", "1k").first == pytest.approx(6.0 * first / 20)
    pinned = DurationStats(PollPolicy(time_scale=0.5))
    pinned.heard(100.0)
    assert pinned.time_scale == 0.5  # the user's setting wins over the server's


# -- probing: when every recent first poll found the task done, the schedule is far too late --


def test_a_server_far_faster_than_planned_is_probed_for() -> None:
    stats = DurationStats(PollPolicy())
    stats.record(KEY, 5.0)
    for elapsed in (0.9, 0.5, 0.7):
        stats.first_poll(KEY, elapsed, True)
    plan = stats.plan(KEY, "pro", "1k")
    assert plan.first == pytest.approx(0.5 * 0.3)  # probe_factor of the earliest done
    assert stats.snapshot(KEY) == {
        "records": [],  # they would pull the schedule back
        "first_polls": [[0.9, True], [0.5, True], [0.7, True]],
        "rescaled": pytest.approx(0.15 / optimal_offsets(0.25, 0.02)[0]),
    }


@pytest.mark.parametrize(
    "firsts",
    [
        [(0.9, True), (0.5, True)],  # fewer than min_probe
        [(0.9, True), (0.5, True), (0.7, True), (6.0, False)],  # not all done
    ],
)
def test_no_probe_without_enough_evidence(firsts: list[tuple[float, bool]]) -> None:
    stats = DurationStats(PollPolicy())
    for elapsed, done in firsts:
        stats.first_poll(KEY, elapsed, done)
    plan = stats.plan(KEY, "pro", "1k")
    assert plan.first == pytest.approx(6.0 * optimal_offsets(0.25, 0.02)[0])
    assert stats.snapshot(KEY)["rescaled"] is None


def test_after_a_probe_the_first_polls_kept_stay_within_the_history() -> None:
    stats = DurationStats(PollPolicy(history=4))
    for elapsed in (0.9, 0.5, 0.7):
        stats.first_poll(KEY, elapsed, True)
    stats.plan(KEY, "pro", "1k")
    for elapsed in (0.2, 0.3, 0.4):
        stats.first_poll(KEY, elapsed, False)
    assert stats.snapshot(KEY)["first_polls"] == [
        [0.7, True],
        [0.2, False],
        [0.3, False],
        [0.4, False],
    ]


def test_the_plan_uses_the_schedule_of_the_fitted_spread_to_a_twentieth() -> None:
    stats = DurationStats(PollPolicy())
    show(stats, 4.0, 0.42)
    assert stats.fit(KEY, prior=6.0) == pytest.approx((4.0, 0.42))
    plan = stats.plan(KEY, "pro", "1k")
    assert plan.polls == pytest.approx([4.0 * x for x in optimal_offsets(0.4, 0.02)])


def test_probing_looks_at_the_recent_first_polls_only() -> None:
    stats = DurationStats(PollPolicy(recent=3))
    stats.first_poll(KEY, 6.0, False)  # older than the three looked at
    for elapsed in (0.9, 0.5, 0.7):
        stats.first_poll(KEY, elapsed, True)
    assert stats.plan(KEY, "pro", "1k").first == pytest.approx(0.15)
    assert stats.snapshot(KEY)["first_polls"] == [[0.9, True], [0.5, True], [0.7, True]]


def test_a_probe_never_moves_the_schedule_later() -> None:
    stats = DurationStats(PollPolicy())
    for elapsed in (30.0, 40.0, 50.0):  # all done, but long after the planned first poll
        stats.first_poll(KEY, elapsed, True)
    assert stats.plan(KEY, "pro", "1k").first == pytest.approx(6.0 * optimal_offsets(0.25, 0.02)[0])


# -- one wait: each delay from the plan -------------------------------------------------------


def schedule_for(
    plan: Plan, deadline: float = 100.0, **knobs: float
) -> tuple[PollSchedule, list[float]]:
    now = [0.0]
    policy = PollPolicy(**knobs)  # type: ignore[arg-type]
    return PollSchedule(policy, plan, started=0.0, deadline=deadline, clock=lambda: now[0]), now


PLAN = Plan(first=1.0, near=0.5, late_after=3.0, cap=2.0, polls=(1.0, 2.0, 3.0))


def test_each_wait_follows_the_plan_then_backs_off_to_the_cap() -> None:
    schedule, now = schedule_for(PLAN)
    gaps = []
    for _ in range(8):
        gap = schedule.delay()
        gaps.append(gap)
        now[0] += gap
        schedule.polled(False)
    # 1.5 ** n times the near interval once late, up to the cap.
    assert gaps == pytest.approx([1.0, 1.0, 1.0, 0.75, 1.125, 1.6875, 2.0, 2.0])


def test_polls_pulled_early_wait_at_the_near_interval_until_the_plan_ends() -> None:
    schedule, now = schedule_for(PLAN)
    for _ in range(3):  # a server's Retry-After brought every planned poll forward
        now[0] += schedule.delay(retry_after=0.1)
        schedule.polled(False)
    assert now[0] == pytest.approx(0.3)
    assert schedule.delay() == 0.5  # near, not yet late
    now[0] = 3.0
    assert schedule.delay() == pytest.approx(0.75)  # late from the plan's end


def test_times_count_from_the_tasks_creation() -> None:
    now = [1000.0]
    schedule = PollSchedule(
        PollPolicy(), PLAN, started=1000.0, deadline=1100.0, clock=lambda: now[0]
    )
    assert schedule.first_at is None
    assert schedule.delay() == 1.0
    now[0] = 1001.0
    schedule.polled(False)
    assert schedule.delay() == 1.0 and schedule.first_at == 1.0
    now[0] = 1002.0
    schedule.polled(True)
    assert schedule.bracket_width() == 1.0 and schedule.finished_after() == 1.5


def test_no_setting_polls_more_often_than_the_floor() -> None:
    schedule, now = schedule_for(PLAN, min_interval=0.0)
    now[0] = 5.0
    schedule.polled(False)
    assert schedule.delay() == POLL_FLOOR


def test_a_poll_already_due_still_waits_the_floor_and_the_minimum_interval() -> None:
    schedule, now = schedule_for(PLAN)
    assert schedule.delay() == 1.0
    now[0] = 5.0  # the first poll came late: the second is overdue
    schedule.polled(False)
    assert schedule.delay() == POLL_FLOOR
    assert schedule.delay(retry_after=0.0) == POLL_FLOOR
    slow, clock = schedule_for(PLAN, min_interval=0.4)
    clock[0] = 1.9
    slow.polled(False)
    assert slow.delay() == pytest.approx(0.4)
    early, clock = schedule_for(PLAN)
    clock[0] = 2.0  # the first poll overdue: made at once (no floor before the first)
    assert early.delay() == 0.0


def test_no_wait_runs_past_the_deadline_and_the_last_floor_is_kept() -> None:
    schedule, now = schedule_for(PLAN, deadline=2.5)
    now[0] = 2.2
    assert schedule.delay(retry_after=10.0) == pytest.approx(0.3)
    now[0] = 2.5 - POLL_FLOOR
    assert not schedule.expired()
    now[0] = 2.5 - POLL_FLOOR / 2
    assert schedule.expired()
    now[0] = 3.0
    assert schedule.delay() == 0.0


def test_what_a_wait_learns() -> None:
    schedule, now = schedule_for(PLAN)
    assert schedule.finished_after() is None and schedule.bracket_width() == 0.0
    now[0] = 1.0
    schedule.polled(False)
    now[0] = 2.0
    schedule.polled(False)
    now[0] = 2.5
    schedule.polled(True)
    assert schedule.first_at == 1.0 and schedule.polls == 3
    assert schedule.finished_after() == pytest.approx(2.25)
    assert schedule.bracket_width() == pytest.approx(0.5)
    at_once, clock = schedule_for(PLAN)
    clock[0] = 1.0
    at_once.polled(True)
    assert at_once.first_at == 1.0 and at_once.finished_after() is None


# -- small pieces --------------------------------------------------------------------------------


def test_quantiles_interpolate_between_neighbours() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    assert quantile(values, 0.0) == 1.0 and quantile(values, 1.0) == 8.0
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.25) == pytest.approx(1.75)
    assert quantile(values, 0.9) == pytest.approx(6.8)
    assert quantile([7.0], 0.3) == 7.0


def test_presets_are_the_balanced_policy_at_another_price() -> None:
    assert PollPolicy.preset("balanced") == PollPolicy()
    assert PollPolicy.preset("eager") == PollPolicy(price=0.005)
    assert PollPolicy.preset("frugal", time_scale=0.1) == PollPolicy(price=0.06, time_scale=0.1)


def test_the_2k_plan_starts_from_the_contracts_2k_time() -> None:
    plan = DurationStats(PollPolicy()).plan(("flux-2-max-text-to-image", "2k"), "max", "2k")
    expected = contract.TYPICAL_SECONDS["max"] * 1.4
    assert plan.first == pytest.approx(expected * optimal_offsets(0.25, 0.02)[0])
