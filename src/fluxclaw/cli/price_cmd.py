"""`fluxclaw price`: the contract's price table, or the cost of one planned run.

Every figure comes from `pricing.estimate_cost`, and which resolutions a family has from
`contract.resolutions_for`, so this command cannot drift from what the client charges against.
"""

from __future__ import annotations

import json

import click

from fluxclaw import contract
from fluxclaw.pricing import estimate_cost


def _usd(cents: int | None) -> str:
    return "unknown" if cents is None else f"${cents / 100:.2f}"


def _dollars(cents: int | None) -> float | None:
    return None if cents is None else cents / 100


def _resolution_help() -> str:
    limits = [
        f"{family}: {', '.join(contract.resolutions_for(family))} only"
        for family in contract.FAMILIES
        if contract.resolutions_for(family) != contract.RESOLUTIONS
    ]
    return f"Resolution to estimate (default {contract.DEFAULT_RESOLUTION}; {'; '.join(limits)})."


@click.command()
@click.option(
    "-m",
    "--model",
    help=f"{', '.join(contract.FAMILIES)} or a full model id: estimate this model.",
)
@click.option(
    "-r",
    "--resolution",
    type=click.Choice(contract.RESOLUTIONS, case_sensitive=False),
    help=_resolution_help(),
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of images to estimate.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(model: str | None, resolution: str | None, count: int, as_json: bool) -> None:
    """Show Flux 2 prices per image (status queries are free; failed tasks are not charged)."""
    if model is None and resolution is None and count == 1:
        _table(as_json)
        return
    from fluxclaw import errors

    try:
        found = estimate_cost(
            model or contract.DEFAULT_FAMILY, resolution or contract.DEFAULT_RESOLUTION, count
        )
    except errors.ValidationError as error:
        raise click.UsageError(str(error)) from error
    if as_json:
        data = {
            "model": found.family,
            "resolution": found.resolution,
            "count": found.count,
            "unit_usd": _dollars(found.unit_cents),
            "total_usd": found.total_usd,
        }
        click.echo(json.dumps(data))
        return
    click.echo(
        f"{found.count} x {found.family} {found.resolution} = {_usd(found.total_cents)} "
        f"({_usd(found.unit_cents)} each)"
    )


def _table(as_json: bool) -> None:
    """One row per family, one column per resolution; `n/a` where the family has none."""
    units = {
        (family, res): estimate_cost(family, res).unit_cents
        for family in contract.FAMILIES
        for res in contract.resolutions_for(family)
    }
    if as_json:
        rows = [
            {"model": family, "resolution": res, "usd": _dollars(cents)}
            for (family, res), cents in units.items()
        ]
        click.echo(json.dumps({"prices": rows}))
        return
    click.echo(f"{'model':<6}" + "".join(f" {res:>8}" for res in contract.RESOLUTIONS))
    for family in contract.FAMILIES:
        cells = [
            _usd(units[family, res]) if (family, res) in units else "n/a"
            for res in contract.RESOLUTIONS
        ]
        click.echo(f"{family:<6}" + "".join(f" {cell:>8}" for cell in cells))
    for family in contract.FAMILIES:
        if all(units[family, res] is None for res in contract.resolutions_for(family)):
            name = family.capitalize()
            click.echo(
                f"{name}: RunAPI publishes no price yet; check runapi.ai before large {name} runs."
            )
