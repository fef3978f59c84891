"""`fluxclaw price`: the contract's price table, or the cost of one planned run."""

from __future__ import annotations

import json

import click

from fluxclaw import contract


def _usd(cents: int | None) -> str:
    return "unknown" if cents is None else f"${cents / 100:.2f}"


@click.command()
@click.option("-m", "--model", help="pro, flex, max or a full model id: estimate this model.")
@click.option(
    "-r", "--resolution", type=click.Choice(contract.RESOLUTIONS), help="Resolution to estimate."
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
        rows = [
            {"model": family, "resolution": res, "usd": None if c is None else c / 100}
            for family in contract.FAMILIES
            for res in contract.RESOLUTIONS
            for c in [contract.price_cents(family, res)]
            if family != "max" or res == "1k"
        ]
        if as_json:
            click.echo(json.dumps({"prices": rows}))
            return
        click.echo(f"{'model':<6} {'1k':>8} {'2k':>8}")
        for family in contract.FAMILIES:
            cells = [
                _usd(contract.price_cents(family, res)) if family != "max" or res == "1k" else "n/a"
                for res in contract.RESOLUTIONS
            ]
            click.echo(f"{family:<6} {cells[0]:>8} {cells[1]:>8}")
        click.echo("Max: RunAPI publishes no price yet; check runapi.ai before large Max runs.")
        return
    try:
        chosen = contract.resolve_model(model or "pro", "text_to_image")
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    res = resolution or contract.DEFAULT_RESOLUTION
    unit = contract.price_cents(chosen.family, res)
    total = None if unit is None else unit * count
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": chosen.family,
                    "resolution": res,
                    "count": count,
                    "unit_usd": None if unit is None else unit / 100,
                    "total_usd": None if total is None else total / 100,
                }
            )
        )
        return
    click.echo(f"{count} x {chosen.family} {res} = {_usd(total)} ({_usd(unit)} each)")
