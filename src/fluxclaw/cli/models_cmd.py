"""`fluxclaw models`: every Flux 2 model with its ids, ratios, resolutions, source limits,
output_count rule and prices, as `pricing.priced_catalog` gives them (the contract's facts; with
`--live`, the API's price schedules)."""

from __future__ import annotations

import json
from typing import Any

import click

from fluxclaw import contract
from fluxclaw.cli.common import handle_errors, setup_debug_logging


def _usd(cents: int | None) -> str:
    return "unknown" if cents is None else f"${cents / 100:.2f}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--live",
    is_flag=True,
    help="Prices from the API's price schedules (no key needed) instead of the contract's table.",
)
@click.option(
    "--base-url",
    metavar="URL",
    help="API base for --live (default: RUNAPI_BASE_URL, config, runapi.ai).",
)
@click.option(
    "--allow-http", is_flag=True, help="Allow a plain http:// --base-url on another machine."
)
@click.option("--debug", is_flag=True, help="Log each HTTP exchange; show tracebacks.")
@handle_errors
def command(as_json: bool, live: bool, base_url: str | None, allow_http: bool, debug: bool) -> None:
    """List the Flux 2 models: ids, aspect ratios, resolutions, source images and prices."""
    from fluxclaw.pricing import priced_catalog

    source = "contract"
    schedule: dict[str, dict[str, int]] | None = None
    if live:
        schedule, source = _schedule(base_url, allow_http, debug)
    catalog = priced_catalog(schedule)
    if as_json:
        for family in catalog:
            for model in family["models"]:
                for price in model["prices"].values():
                    cents = price["cents"]
                    price["usd"] = None if cents is None else cents / 100
        click.echo(json.dumps({"prices_from": source, "currency": "USD", "families": catalog}))
        return
    _print_table(catalog, source)


def _schedule(
    base_url: str | None, allow_http: bool, debug: bool
) -> tuple[dict[str, dict[str, int]], str]:
    """Cents per model id from the API's price schedules, and the base URL they came from."""
    from fluxclaw.client import Client
    from fluxclaw.pricing import schedule_prices

    if debug:
        setup_debug_logging()
    with Client(base_url=base_url, allow_http=allow_http) as client:
        found = schedule_prices(client.price_schedules())
        url = client.base_url
    if not found:
        click.echo(
            f"warning: {url} published no usable Flux 2 price; showing the contract's.", err=True
        )
    return found, url


def _print_table(catalog: list[dict[str, Any]], source: str) -> None:
    """One row per model id, one price column per resolution (`n/a` where a family has none)."""
    rows = [["model", "aspect ratios", "sources", "output_count", *contract.RESOLUTIONS]]
    for family in catalog:
        count = family["output_count"]
        for model in family["models"]:
            sources = model["source_images"]
            prices = model["prices"]
            rows.append(
                [
                    model["id"],
                    " ".join(model["aspect_ratios"]),
                    "-" if sources is None else sources["text"],
                    "omit" if count is None else f"{count} or omit",
                    *(
                        _usd(prices[res]["cents"]) if res in prices else "n/a"
                        for res in contract.RESOLUTIONS
                    ),
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for family in catalog:
        if family["restrictions"]:
            click.echo(f"{family['family']}: {family['restrictions']}")
    where = "the contract's table" if source == "contract" else f"{source}'s price schedules"
    bases = {p["basis"] for f in catalog for m in f["models"] for p in m["prices"].values()}
    if source != "contract" and "contract" in bases:
        where += " (the contract's table where they name none)"
    click.echo(f"prices: USD per image, from {where}")
    unknown = sorted(
        {
            family["family"]
            for family in catalog
            for model in family["models"]
            if any(price["cents"] is None for price in model["prices"].values())
        }
    )
    for name in unknown:
        click.echo(f"{name}: RunAPI publishes no price yet; check runapi.ai before large runs.")
