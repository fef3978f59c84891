"""`fluxclaw config`: store the key and base URL in the user's config file (mode 0600)."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--api-key", metavar="KEY", help="Store this RunAPI key (`-` reads it from stdin).")
@click.option("--base-url", metavar="URL", help="Store this API base URL ('' removes it).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored settings as JSON.")
def command(api_key: str | None, base_url: str | None, as_json: bool) -> None:
    """Store settings, or show them (the key is never printed, only whether one is set)."""
    from fluxclaw.config import config_path, load_config, write_config

    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    if api_key is not None or base_url is not None:
        path = write_config(api_key=api_key, base_url=base_url)
        click.echo(f"saved {path}", err=True)
    stored = load_config()
    shown = {
        "path": str(config_path()),
        "api_key_set": bool(stored.get("api_key")),
        "base_url": stored.get("base_url"),
    }
    if as_json:
        click.echo(json.dumps(shown))
    else:
        for name, value in shown.items():
            click.echo(f"{name}: {value}")
