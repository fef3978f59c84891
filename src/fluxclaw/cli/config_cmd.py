"""`fluxclaw config`: store the key, base URL and daily budget in the user's config file (0600)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from fluxclaw.cli.common import handle_errors


@click.command()
@click.option("--api-key", metavar="KEY", help="Store this RunAPI key (`-` reads it from stdin).")
@click.option("--base-url", metavar="URL", help="Store this API base URL ('' removes it).")
@click.option(
    "--daily-budget",
    metavar="USD",
    type=click.FloatRange(min=0),
    help="Refuse, in every door, any create that would take today's spend past USD (0 removes).",
)
@click.option(
    "--c2pa-cert",
    metavar="PEM",
    help="Sign every saved image with this C2PA certificate chain ('' removes it).",
)
@click.option("--c2pa-key", metavar="PEM", help="The private key of --c2pa-cert ('' removes it).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored settings as JSON.")
@handle_errors
def command(
    api_key: str | None,
    base_url: str | None,
    daily_budget: float | None,
    c2pa_cert: str | None,
    c2pa_key: str | None,
    as_json: bool,
) -> None:
    """Store settings, or show them (the key is never printed, only whether one is set)."""
    from fluxclaw.config import config_path, load_config, write_config
    from fluxclaw.spending import CONFIG_KEY

    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    signing = {
        name: (str(Path(value).expanduser().resolve()) if value else None)
        for name, value in (("c2pa_cert", c2pa_cert), ("c2pa_key", c2pa_key))
        if value is not None
    }
    if api_key is not None or base_url is not None or daily_budget is not None or signing:
        extra: dict[str, Any] = dict(signing)
        if daily_budget is not None:
            extra[CONFIG_KEY] = daily_budget or None
        path = write_config(api_key=api_key, base_url=base_url, extra=extra or None)
        click.echo(f"saved {path}", err=True)
    stored = load_config()
    shown = {
        "path": str(config_path()),
        "api_key_set": bool(stored.get("api_key")),
        "base_url": stored.get("base_url"),
        "daily_budget_usd": stored.get(CONFIG_KEY),
        "c2pa_cert": stored.get("c2pa_cert"),
        "c2pa_key": stored.get("c2pa_key"),
    }
    if as_json:
        click.echo(json.dumps(shown))
    else:
        for name, value in shown.items():
            click.echo(f"{name}: {value}")
