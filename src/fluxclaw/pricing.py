"""What a run will cost: the user's configured prices, else the API's own price schedules
(fetched with their ETag and kept an hour), else the contract's table; Max stays unknown when
none of them knows it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fluxclaw import contract

Basis = Literal["contract", "configured", "schedule", "unknown"]
# How long the API's schedules are used before they are asked for again (with their ETag, so
# an unchanged schedule costs a 304); after a failed ask, the next one waits a minute.
SCHEDULE_TTL = 3600.0
SCHEDULE_RETRY = 60.0
# No image costs more than this; a larger number in a schedule is not believed.
_MAX_CENTS = 100_000


@dataclass
class PriceList:
    """The API's price schedules as cents per model id and resolution, with their ETag."""

    prices: dict[str, dict[str, int]] = field(default_factory=dict)
    etag: str | None = None
    checked_at: float = 0.0  # wall-clock time of the last answer (or failed ask)

    def fresh(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.checked_at < SCHEDULE_TTL

    def failed(self) -> None:
        self.checked_at = time.time() - SCHEDULE_TTL + SCHEDULE_RETRY

    def to_json(self) -> dict[str, Any]:
        return {"prices": self.prices, "etag": self.etag, "checked_at": self.checked_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PriceList:
        found = cls(schedule_prices({"price_schedules": _rows(data.get("prices"))}))
        etag = data.get("etag")
        found.etag = etag if isinstance(etag, str) and len(etag) < 200 else None
        checked = data.get("checked_at")
        found.checked_at = float(checked) if isinstance(checked, int | float) else 0.0
        return found


def _rows(prices: Any) -> list[dict[str, Any]]:
    """A stored price list back in the schedule's own shape (so one reader checks both)."""
    if not isinstance(prices, dict):
        return []
    return [
        {"model": model, "billing_config": {"overrides": table}}
        for model, table in prices.items()
        if isinstance(table, dict)
    ]


def schedule_prices(body: Any) -> dict[str, dict[str, int]]:
    """Cents per model id and resolution from a `price_schedules` answer. Rows that do not
    read as the contract describes (unknown model, odd resolution, a price that is not a
    whole number of cents in range) are left out: the server's word is checked before use."""
    rows = body.get("price_schedules") if isinstance(body, dict) else None
    found: dict[str, dict[str, int]] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("model") not in contract.MODELS:
            continue
        model = contract.MODELS[row["model"]]
        config = row.get("billing_config")
        overrides = config.get("overrides") if isinstance(config, dict) else None
        table: dict[str, int] = {}
        for resolution in contract.resolutions_for(model.family):
            cents = overrides.get(resolution) if isinstance(overrides, dict) else None
            if cents is None and resolution == contract.DEFAULT_RESOLUTION:
                cents = row.get("unit_price_cents")
            if isinstance(cents, int) and not isinstance(cents, bool) and 0 <= cents <= _MAX_CENTS:
                table[resolution] = cents
        if table:
            found[model.id] = table
    return found


@dataclass(frozen=True, slots=True)
class CostEstimate:
    model: str
    family: contract.Family
    resolution: str
    count: int
    unit_cents: int | None
    total_cents: int | None
    basis: Basis

    @property
    def total_usd(self) -> float | None:
        return None if self.total_cents is None else self.total_cents / 100


def estimate_cost(
    model: str = contract.DEFAULT_FAMILY,
    resolution: str = contract.DEFAULT_RESOLUTION,
    count: int = 1,
    *,
    action: contract.Action = "text_to_image",
    prices: Mapping[str, Mapping[str, int]] | None = None,
    schedule: Mapping[str, Mapping[str, int]] | None = None,
) -> CostEstimate:
    """Cents for `count` images. `prices` ({"max": {"1k": 8}}) are the user's own and win;
    `schedule` (cents per model id, from the API's price schedules) comes next, then the
    contract's table.

    A resolution the model does not take (Max at 2k) is refused with the create's own message:
    an estimate of a request that cannot be sent would be a made-up price.
    """
    from fluxclaw import errors

    try:
        chosen = contract.resolve_model(model, action)
    except ValueError as exc:
        raise errors.ValidationError(str(exc), errors={"model": [str(exc)]}) from exc
    allowed = contract.resolutions_for(chosen.family)
    if resolution not in allowed:
        wrong = contract.resolution_violations(chosen, resolution)  # empty for a blank value
        message = (
            wrong[0].message
            if wrong
            else f"output_resolution is required; use one of: {', '.join(allowed)}."
        )
        raise errors.ValidationError(message, errors={"output_resolution": [message]})
    if count < 1:
        raise errors.ValidationError(f"count={count} must be at least 1.")
    basis: Basis = "contract"
    unit = contract.price_cents(chosen.family, resolution)
    configured = (prices or {}).get(chosen.family, {}).get(resolution)
    published = (schedule or {}).get(chosen.id, {}).get(resolution)
    if configured is not None:
        unit, basis = int(configured), "configured"
    elif published is not None:
        unit, basis = int(published), "schedule"
    elif unit is None:
        basis = "unknown"
    total = None if unit is None else unit * count
    return CostEstimate(chosen.id, chosen.family, resolution, count, unit, total, basis)


def priced_catalog(schedule: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """`contract.model_catalog()` with each model's price per resolution it takes: `cents`
    (None if unknown) and its `basis`, from `schedule` (cents per model id) else the contract."""
    catalog = contract.model_catalog()
    for family in catalog:
        for model in family["models"]:
            model["prices"] = {}
            for resolution in family["resolutions"]:
                found = estimate_cost(
                    model["id"], resolution, action=model["action"], schedule=schedule
                )
                model["prices"][resolution] = {"cents": found.unit_cents, "basis": found.basis}
    return catalog
