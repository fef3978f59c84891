"""What a run will cost, from the contract's table; Max stays unknown unless configured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fluxclaw import contract

Basis = Literal["contract", "configured", "unknown"]


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
) -> CostEstimate:
    """Cents for `count` images. `prices` ({"max": {"1k": 8}}) fills what the contract lacks.

    A resolution the model does not take (Max at 2k) is refused with the create's own message:
    an estimate of a request that cannot be sent would be a made-up price.
    """
    from fluxclaw import errors

    try:
        chosen = contract.resolve_model(model, action)
    except ValueError as exc:
        raise errors.ValidationError(str(exc), errors={"model": [str(exc)]}) from None
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
    if configured is not None:
        unit, basis = int(configured), "configured"
    elif unit is None:
        basis = "unknown"
    total = None if unit is None else unit * count
    return CostEstimate(chosen.id, chosen.family, resolution, count, unit, total, basis)
