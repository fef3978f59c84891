"""The money decisions at their edges, in process: which price an estimate uses (configured,
then the API's schedule, then the contract, else unknown), which schedule rows are believed,
and the daily cap and a batch's --budget as the ledger's write checks them (equal to the cap
passes, one cent more is refused, with the exact message a user reads).

Expected prices come from the contract as published (Pro 5/7 cents at 1k/2k, Flex 14/24, Max
unknown), written out here, never from the code under test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import config, errors, spending
from fluxclaw.contract import Family
from fluxclaw.history import Guard, History
from fluxclaw.pricing import (
    CostEstimate,
    PriceList,
    _rows,
    estimate_cost,
    priced_catalog,
    schedule_prices,
)

PRO = "flux-2-pro-text-to-image"
PRO_REMIX = "flux-2-pro-remix-image"
FLEX = "flux-2-flex-text-to-image"
FLEX_REMIX = "flux-2-flex-remix-image"
MAX = "flux-2-max-text-to-image"
MAX_REMIX = "flux-2-max-remix-image"
API = "https://runapi.ai"


# The config file and data folder are each test's own: tests/conftest.py's _isolated_state.


# --- PriceList -----------------------------------------------------------------------------


def test_a_price_list_is_fresh_for_an_hour_after_its_answer() -> None:
    found = PriceList(checked_at=1000.0)
    assert found.fresh(1000.0 + 3599.5)
    assert not found.fresh(1000.0 + 3600.0)
    assert found.fresh(1000.0)
    assert PriceList(checked_at=time.time()).fresh()  # now, when no time is given
    assert not PriceList().fresh()  # never asked: stale


def test_a_failed_ask_waits_a_minute_before_the_next() -> None:
    found = PriceList({PRO: {"1k": 4}}, "v1", 0.0)
    before = time.time()
    found.failed()
    after = time.time()
    assert before - 3540.0 <= found.checked_at <= after - 3540.0
    assert found.fresh()
    assert found.fresh(found.checked_at + 3599.0)
    assert not found.fresh(found.checked_at + 3600.0)
    assert found.prices == {PRO: {"1k": 4}} and found.etag == "v1"  # only the clock moves


def test_a_price_list_round_trips_through_json() -> None:
    kept = PriceList({PRO: {"1k": 4, "2k": 6}, MAX: {"1k": 9}}, '"abc"', 1234.5)
    data = kept.to_json()
    assert data == {
        "prices": {PRO: {"1k": 4, "2k": 6}, MAX: {"1k": 9}},
        "etag": '"abc"',
        "checked_at": 1234.5,
    }
    assert PriceList.from_json(data) == kept


def test_a_stored_price_list_is_checked_like_the_servers_word() -> None:
    stored = {
        "prices": {
            PRO: {"1k": 4, "2k": -1},
            MAX: {"1k": 9, "2k": 9},  # Max takes 1k only
            "flux-3-ultra": {"1k": 1},
            FLEX: 14,  # not a table
        },
        "etag": "e" * 199,
        "checked_at": 5,
    }
    found = PriceList.from_json(stored)
    assert found.prices == {PRO: {"1k": 4}, MAX: {"1k": 9}}
    assert found.etag == "e" * 199
    assert found.checked_at == 5.0 and isinstance(found.checked_at, float)


def test_a_stored_price_list_drops_what_it_cannot_believe() -> None:
    assert PriceList.from_json({}) == PriceList({}, None, 0.0)
    odd = PriceList.from_json({"prices": [PRO], "etag": "e" * 200, "checked_at": "5"})
    assert odd == PriceList({}, None, 0.0)
    assert PriceList.from_json({"etag": 7, "checked_at": 2.5}) == PriceList({}, None, 2.5)


def test_stored_prices_go_back_into_the_schedules_own_shape() -> None:
    assert _rows(None) == []
    assert _rows([{"model": PRO}]) == []
    assert _rows({PRO: {"1k": 4}, FLEX: 14, MAX: {}}) == [
        {"model": PRO, "billing_config": {"overrides": {"1k": 4}}},
        {"model": MAX, "billing_config": {"overrides": {}}},
    ]


# --- schedule_prices -----------------------------------------------------------------------


def test_schedule_rows_are_read_per_model_id_and_resolution() -> None:
    body = {
        "price_schedules": [
            "flux-2-flex-text-to-image",  # rows that are left out do not end the reading
            {"model": "flux-3-ultra", "unit_price_cents": 1},
            {"model": PRO, "billing_config": {"overrides": {"1k": 4, "2k": 6}}},
            {"model": FLEX, "unit_price_cents": 13},  # the unit price is the 1k price only
            {
                "model": FLEX_REMIX,
                "unit_price_cents": 13,
                "billing_config": {"overrides": {"1k": 12, "2k": 0}},
            },
            {"model": MAX, "billing_config": {"overrides": {"1k": 100_000, "2k": 9}}},
        ]
    }
    assert schedule_prices(body) == {
        PRO: {"1k": 4, "2k": 6},
        FLEX: {"1k": 13},
        FLEX_REMIX: {"1k": 12, "2k": 0},
        MAX: {"1k": 100_000},
    }


def test_a_unit_price_fills_in_only_a_missing_1k_override() -> None:
    rows = [
        {"model": PRO, "unit_price_cents": 3, "billing_config": {"overrides": {"2k": 6}}},
        {"model": FLEX, "unit_price_cents": 11, "billing_config": "per image"},
        {"model": FLEX_REMIX, "unit_price_cents": 12, "billing_config": {"overrides": [1]}},
    ]
    assert schedule_prices({"price_schedules": rows}) == {
        PRO: {"1k": 3, "2k": 6},
        FLEX: {"1k": 11},
        FLEX_REMIX: {"1k": 12},
    }


@pytest.mark.parametrize(
    "row",
    [
        "flux-2-pro-text-to-image",
        {"model": "flux-3-ultra", "unit_price_cents": 1},
        {"unit_price_cents": 1},
        {"model": PRO, "unit_price_cents": -1},
        {"model": PRO, "unit_price_cents": 100_001},
        {"model": PRO, "unit_price_cents": True},
        {"model": PRO, "unit_price_cents": 5.0},
        {"model": PRO, "unit_price_cents": "5"},
        {"model": PRO, "unit_price_cents": 5, "billing_config": {"overrides": {"1k": False}}},
        {"model": MAX, "billing_config": {"overrides": {"2k": 9}}},
        {"model": PRO},
    ],
)
def test_a_row_that_does_not_read_as_the_contract_says_is_left_out(row: Any) -> None:
    assert schedule_prices({"price_schedules": [row]}) == {}


@pytest.mark.parametrize(
    "body",
    [None, [], "price_schedules", {}, {"price_schedules": None}, {"price_schedules": {PRO: 1}}],
)
def test_an_answer_without_a_list_of_schedules_has_no_prices(body: Any) -> None:
    assert schedule_prices(body) == {}


# --- estimate_cost -------------------------------------------------------------------------


def test_the_default_estimate_is_one_pro_image_at_1k_from_the_contract() -> None:
    found = estimate_cost()
    assert found == CostEstimate(PRO, "pro", "1k", 1, 5, 5, "contract")
    assert found.total_usd == 0.05


@pytest.mark.parametrize(
    ("model", "resolution", "count", "unit"),
    [("pro", "1k", 3, 5), ("pro", "2k", 2, 7), ("flex", "1k", 1, 14), ("Flux-2-Flex", "2k", 4, 24)],
)
def test_the_contracts_prices_times_the_count(
    model: str, resolution: str, count: int, unit: int
) -> None:
    found = estimate_cost(model, resolution, count)
    assert (found.unit_cents, found.total_cents, found.basis) == (unit, unit * count, "contract")
    assert found.count == count and found.resolution == resolution
    assert found.total_usd == unit * count / 100


def test_max_has_no_price_unless_someone_gives_one() -> None:
    unknown = estimate_cost("max", count=2)
    assert unknown == CostEstimate(MAX, "max", "1k", 2, None, None, "unknown")
    assert unknown.total_usd is None
    published = estimate_cost("max", count=2, schedule={MAX: {"1k": 9}})
    assert (published.unit_cents, published.total_cents, published.basis) == (9, 18, "schedule")
    mine = estimate_cost("max", count=2, prices={"max": {"1k": 8}}, schedule={MAX: {"1k": 9}})
    assert (mine.unit_cents, mine.total_cents, mine.basis) == (8, 16, "configured")


def test_configured_beats_schedule_beats_contract() -> None:
    schedule = {PRO: {"1k": 4, "2k": 6}}
    prices = {"pro": {"2k": 3}}
    assert estimate_cost("pro", "2k", prices=prices, schedule=schedule).basis == "configured"
    assert estimate_cost("pro", "2k", prices=prices, schedule=schedule).unit_cents == 3
    by_schedule = estimate_cost("pro", "1k", prices=prices, schedule=schedule)
    assert (by_schedule.unit_cents, by_schedule.basis) == (4, "schedule")
    # Prices and schedules for other families, models or resolutions change nothing.
    elsewhere = estimate_cost(
        "flex", "2k", prices={"pro": {"2k": 1}}, schedule={PRO: {"2k": 1}, FLEX: {"1k": 1}}
    )
    assert (elsewhere.unit_cents, elsewhere.total_cents, elsewhere.basis) == (24, 24, "contract")
    # A configured price is a whole number of cents, whatever number type it came as.
    configured = estimate_cost("flex", "1k", 2, prices={"flex": {"1k": 12.0}})  # type: ignore[dict-item]
    assert configured.unit_cents == 12 and isinstance(configured.unit_cents, int)
    assert configured.total_cents == 24


def test_a_schedule_is_read_by_the_id_of_the_model_for_the_action() -> None:
    schedule = {PRO_REMIX: {"1k": 2}}
    assert estimate_cost("pro", schedule=schedule).basis == "contract"
    remix = estimate_cost("pro", action="remix_image", schedule=schedule)
    assert remix == CostEstimate(PRO_REMIX, "pro", "1k", 1, 2, 2, "schedule")
    # A full id of the other action maps to its sibling.
    assert estimate_cost(PRO_REMIX).model == PRO


def test_an_unknown_model_is_refused_with_the_contracts_words() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        estimate_cost("ultra")
    message = (
        "model='ultra' is not a Flux 2 model; use one of: pro, flex, max, or a full model id "
        "(`fluxclaw models` lists them)."
    )
    assert str(caught.value) == message
    assert caught.value.errors == {"model": [message]}


@pytest.mark.parametrize(
    ("model", "resolution", "message"),
    [
        ("max", "2k", f"output_resolution=2k is not allowed for model={MAX}; use 1k."),
        ("pro", "4k", "output_resolution=4k is not allowed; use one of: 1k, 2k."),
        ("pro", "", "output_resolution is required; use one of: 1k, 2k."),
        ("max", " ", "output_resolution is required; use one of: 1k."),
    ],
)
def test_a_resolution_the_model_does_not_take_is_refused(
    model: str, resolution: str, message: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        estimate_cost(model, resolution, prices={"max": {"2k": 1}})
    assert str(caught.value) == message
    assert caught.value.errors == {"output_resolution": [message]}


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        estimate_cost("pro", "1k", 0)
    assert str(caught.value) == "count=0 must be at least 1."
    assert caught.value.errors == {}
    assert estimate_cost("pro", "1k", 1).total_cents == 5


# --- priced_catalog ------------------------------------------------------------------------


def _prices(catalog: list[dict[str, Any]]) -> dict[str, Any]:
    return {model["id"]: model["prices"] for family in catalog for model in family["models"]}


def test_the_catalog_shows_the_contracts_prices_and_max_as_unknown() -> None:
    def contract(cents: int) -> dict[str, Any]:
        return {"cents": cents, "basis": "contract"}

    catalog = priced_catalog()
    assert [family["family"] for family in catalog] == ["pro", "flex", "max"]
    unknown = {"1k": {"cents": None, "basis": "unknown"}}
    assert _prices(catalog) == {
        PRO: {"1k": contract(5), "2k": contract(7)},
        PRO_REMIX: {"1k": contract(5), "2k": contract(7)},
        FLEX: {"1k": contract(14), "2k": contract(24)},
        FLEX_REMIX: {"1k": contract(14), "2k": contract(24)},
        MAX: unknown,
        MAX_REMIX: unknown,
    }


def test_the_catalog_takes_the_schedule_per_model_id() -> None:
    found = _prices(priced_catalog({MAX_REMIX: {"1k": 9}, PRO: {"2k": 6}}))
    assert found[MAX_REMIX] == {"1k": {"cents": 9, "basis": "schedule"}}
    assert found[MAX] == {"1k": {"cents": None, "basis": "unknown"}}
    assert found[PRO] == {
        "1k": {"cents": 5, "basis": "contract"},
        "2k": {"cents": 6, "basis": "schedule"},
    }
    assert found[PRO_REMIX]["2k"] == {"cents": 7, "basis": "contract"}


# --- midnight ------------------------------------------------------------------------------

BERLIN = "CET-1CEST,M3.5.0,M10.5.0/3"  # a zone with summer time, without needing tzdata
SUMMER = timezone(timedelta(hours=2))
WINTER = timezone(timedelta(hours=1))


@pytest.fixture
def berlin() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", BERLIN)
        time.tzset()
        yield
    time.tzset()  # the process's own zone again, for every later test


@pytest.mark.usefixtures("berlin")
@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2024, 7, 15, 14, 30, tzinfo=SUMMER), datetime(2024, 7, 15, tzinfo=SUMMER)),
        (datetime(2024, 1, 15, 23, 59, 59, tzinfo=WINTER), datetime(2024, 1, 15, tzinfo=WINTER)),
        (datetime(2024, 1, 16, tzinfo=WINTER), datetime(2024, 1, 16, tzinfo=WINTER)),
        # The day summer time starts: midnight was still winter time.
        (datetime(2024, 3, 31, 12, 0, tzinfo=SUMMER), datetime(2024, 3, 31, tzinfo=WINTER)),
        (datetime(2024, 10, 27, 18, 0, tzinfo=WINTER), datetime(2024, 10, 27, tzinfo=SUMMER)),
    ],
)
def test_midnight_is_the_start_of_the_local_day(now: datetime, start: datetime) -> None:
    assert spending.midnight(now.timestamp()) == start.timestamp()


@pytest.mark.usefixtures("berlin")
def test_midnight_without_a_time_is_todays() -> None:
    today = datetime.combine(date.today(), clock.min).timestamp()
    assert spending.midnight() == today


# --- guard: the daily cap and a batch's budget, in the ledger's write -----------------------


def set_daily_budget(usd: float | None) -> None:
    """As `fluxclaw config --daily-budget USD` stores it (0 removes it)."""
    config.write_config(extra={config.DAILY_BUDGET_KEY: usd or None})


def estimate(cents: int | None, model: str = PRO) -> CostEstimate:
    family: Family = "max" if cents is None else "pro"
    return CostEstimate(model, family, "1k", 1, cents, cents, "contract")


def start(
    history: History,
    cents: int | None,
    *,
    base_url: str = API,
    batch: str | None = None,
    created_at: float | None = None,
    sandbox: bool = False,
    guard: Guard | None = None,
) -> int:
    return history.start(
        action="text_to_image",
        model=PRO,
        prompt="a teapot",
        params={},
        idempotency_key=None,
        base_url=base_url,
        estimate_cents=cents,
        batch=batch,
        created_at=created_at,
        sandbox=sandbox,
        guard=guard,
    )


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    found = History(tmp_path / "data" / "history.sqlite")
    yield found
    found.close()


def test_the_daily_budget_is_read_from_the_config_file() -> None:
    assert spending.daily_budget() is None
    set_daily_budget(0.57)
    assert spending.daily_budget() == 0.57
    set_daily_budget(0)
    assert spending.daily_budget() is None


def test_the_daily_cap_counts_todays_rows_of_this_api_and_passes_at_exactly_the_cap(
    history: History,
) -> None:
    set_daily_budget(0.57)  # 0.57 * 100 is 56.99999999999999: the cap is 57 cents
    last_night = datetime.combine(date.today(), clock.min).timestamp() - 1
    start(history, 40, base_url="HTTPS://RunAPI.ai/")  # the same API, spelt otherwise
    start(history, 12, batch="b1")  # a batch's rows count toward the day too
    start(history, 1000, created_at=last_night)
    start(history, 50, base_url="https://other.example")
    start(history, 1000, sandbox=True)
    assert history.committed_cents(api=API) == 1052  # this API, last night included

    start(history, 5, guard=spending.guard(API, estimate(5)))  # 52 + 5 = 57: exactly the cap
    with pytest.raises(errors.BudgetExceededError) as caught:
        start(history, 1, guard=spending.guard(API + "/", estimate(1)))
    assert str(caught.value) == (
        "this image ($0.01) would pass today's budget of $0.57: $0.57 is already spent or "
        "running. Raise it with `fluxclaw config --daily-budget USD`, or wait until midnight."
    )
    assert caught.value.exit_code == 8
    assert history.committed_cents(api=API) == 1057  # the refused row was never written
    # Another API has its own day: 50 + 5 is under its cap.
    start(
        history,
        5,
        base_url="https://other.example",
        guard=spending.guard("https://other.example", estimate(5)),
    )
    assert history.committed_cents(api="https://other.example") == 55


def test_the_daily_cap_refuses_an_image_that_alone_passes_it(history: History) -> None:
    set_daily_budget(0.05)
    with pytest.raises(errors.BudgetExceededError) as caught:
        start(history, 150, guard=spending.guard(API, estimate(150)))
    assert str(caught.value).startswith(
        "this image ($1.50) would pass today's budget of $0.05: $0.00 is already spent"
    )
    start(history, 5, guard=spending.guard(API, estimate(5)))
    assert history.committed_cents(api=API) == 5


def test_an_unknown_price_cannot_be_kept_under_a_daily_budget(history: History) -> None:
    set_daily_budget(0.57)
    with pytest.raises(errors.BudgetExceededError) as caught:
        start(history, None, guard=spending.guard(API, estimate(None, MAX)))
    assert str(caught.value) == (
        f"{MAX} has no known price, so the daily budget of $0.57 cannot be kept; set its price "
        "(prices={'max': {'1k': cents}}) or remove the budget with "
        "`fluxclaw config --daily-budget 0`."
    )
    assert history.committed_cents() == 0


def test_without_a_cap_or_budget_any_price_passes(history: History) -> None:
    start(history, 5000, batch="b1")
    start(history, None, guard=spending.guard(API, estimate(None, MAX)))
    start(history, 5, batch="b1", guard=spending.guard(API, estimate(5), batch="b1"))
    # A budget without a batch, or a batch without a budget, is no batch cap.
    start(history, 5, guard=spending.guard(API, estimate(5), batch_budget_usd=0.01))
    start(history, 5, batch="b1", guard=spending.guard(API, estimate(5), batch="b1"))
    assert history.committed_cents(api=API) == 5015


def test_a_batch_budget_counts_its_own_rows_and_passes_at_exactly_the_budget(
    history: History,
) -> None:
    long_ago = time.time() - 3 * 86400
    start(history, 40, batch="b1", created_at=long_ago)  # a batch's budget has no day
    start(history, 12, batch="b1", base_url="https://other.example")  # nor one API
    start(history, 1000, batch="b2")
    start(history, 1000)

    def guard(cents: int | None) -> Guard:
        return spending.guard(API, estimate(cents), batch="b1", batch_budget_usd=0.57)

    start(history, 5, batch="b1", guard=guard(5))  # 52 + 5 = 57: exactly the budget
    with pytest.raises(errors.BudgetExceededError) as caught:
        start(history, 1, batch="b1", guard=guard(1))
    assert (
        str(caught.value) == "would pass the budget of $0.57 ($0.57 spent or running in this batch)"
    )
    assert history.committed_cents(batch="b1") == 57
    with pytest.raises(errors.BudgetExceededError) as unknown:
        start(history, None, batch="b1", guard=guard(None))
    assert str(unknown.value) == f"{PRO} has no known price, so --budget cannot be kept"


def test_the_daily_cap_is_checked_before_the_batch_budget(history: History) -> None:
    set_daily_budget(0.10)
    start(history, 8)
    both = spending.guard(API, estimate(5), batch="b1", batch_budget_usd=0.01)
    with pytest.raises(errors.BudgetExceededError) as caught:
        start(history, 5, batch="b1", guard=both)
    assert str(caught.value).startswith("this image ($0.05) would pass today's budget of $0.10")
    under_the_day = spending.guard(API, estimate(2), batch="b1", batch_budget_usd=0.01)
    with pytest.raises(errors.BudgetExceededError) as batch:
        start(history, 2, batch="b1", guard=under_the_day)
    assert (
        str(batch.value) == "would pass the budget of $0.01 ($0.00 spent or running in this batch)"
    )


def test_a_refused_row_sent_again_is_checked_again(history: History) -> None:
    set_daily_budget(0.10)
    row = start(history, 5)
    history.update(row, status="failed")  # failed: counts nothing
    start(history, 8)
    with pytest.raises(errors.BudgetExceededError):
        history.reopen(row, spending.guard(API, estimate(5)))
    assert history.committed_cents(api=API) == 8
