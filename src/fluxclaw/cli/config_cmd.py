"""`fluxclaw config`: store the key, base URL and daily budget in the user's config file (0600),
and show every setting in effect with where it came from.

Values are checked (by fluxclaw.config) before anything is written, so a typo is refused here
and not at the first paid call; this module only reads the options and prints.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from fluxclaw import contract
from fluxclaw.cli.common import fail, handle_errors

if TYPE_CHECKING:
    from fluxclaw.config import Effective

# What `--api-key` with no value stands for: ask for the key without echoing it.
_ASK = "\0ask"


@click.command()
@click.option(
    "--api-key",
    metavar="[KEY]",
    is_flag=False,
    flag_value=_ASK,
    help="Store this RunAPI key; with no value, ask for it without echo (`-` reads stdin).",
)
@click.option("--base-url", metavar="URL", help="Store this API base URL ('' removes it).")
@click.option(
    "--daily-budget",
    metavar="USD",
    type=click.FloatRange(min=0),
    help="Refuse, in every door, any create that would take today's spend past USD (0 removes).",
)
@click.option(
    "--confirm-above",
    metavar="USD",
    type=click.FloatRange(min=0),
    help="At a terminal, ask before a run estimated above USD (default 1; 0 asks every time).",
)
@click.option(
    "--c2pa-cert",
    metavar="PEM",
    help="Sign every saved image with this C2PA certificate chain ('' removes it).",
)
@click.option("--c2pa-key", metavar="PEM", help="The private key of --c2pa-cert ('' removes it).")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as one JSON object.")
@handle_errors
def command(
    api_key: str | None,
    base_url: str | None,
    daily_budget: float | None,
    confirm_above: float | None,
    c2pa_cert: str | None,
    c2pa_key: str | None,
    as_json: bool,
) -> None:
    """Store settings, then show each one in effect and where it comes from: the environment,
    the config file or the default. The key is never printed, only whether one is set."""
    from fluxclaw import config

    # Every value is read and checked first: a refusal writes nothing.
    api_key = _read_key(api_key)
    if base_url is not None:
        base_url = config.base_url_to_store(base_url)
    extra: dict[str, Any] = {
        name: config.pem_path_to_store(name, value) or None
        for name, value in (("c2pa_cert", c2pa_cert), ("c2pa_key", c2pa_key))
        if value is not None
    }
    if daily_budget is not None:
        extra[config.DAILY_BUDGET_KEY] = daily_budget or None
    if confirm_above is not None:
        extra[config.CONFIRM_ABOVE_KEY] = confirm_above
    stored = [name for name, value in (("api_key", api_key), ("base_url", base_url)) if value]
    stored += [name for name, value in extra.items() if value is not None]
    if api_key is not None or base_url is not None or extra:
        written = config.write_config(api_key=api_key, base_url=base_url, extra=extra or None)
        click.echo(f"saved {written}", err=True)
    if base_url and config.needs_allow_http(base_url):
        click.echo(
            f"warning: {base_url} is plain http to another machine: commands will refuse it "
            "unless given --allow-http, since your key would cross the network in clear text.",
            err=True,
        )
    settings = config.effective_settings()
    variables = {
        "api_key": config.ENV_API_KEY,
        "base_url": config.ENV_BASE_URL,
        "c2pa_cert": f"{config.ENV_C2PA_CERT} or {config.ENV_C2PA_KEY}",
        "c2pa_key": f"{config.ENV_C2PA_CERT} or {config.ENV_C2PA_KEY}",
    }
    for name in stored:
        if settings[name].source == "environment":
            click.echo(
                f"note: {variables[name]} is set and wins over the {name} just stored; "
                "unset it to use the stored one.",
                err=True,
            )
    path = str(config.config_path())
    if as_json:
        click.echo(json.dumps({"path": path, "settings": _as_json(settings)}))
        return
    click.echo(f"config file: {path}")
    _print_table(settings)


def _read_key(api_key: str | None) -> str | None:
    """The key to store: as given, from stdin (`-`), or typed at a hidden prompt."""
    if api_key == _ASK:
        if not sys.stdin.isatty():
            fail(
                "--api-key needs a value when stdin is not a terminal; pipe the key in with "
                "`--api-key -`, or give it as `--api-key KEY`.",
                contract.EXIT_INVALID,
            )
        typed: str = click.prompt("RunAPI key", hide_input=True, err=True)
        api_key = typed
    elif api_key == "-":
        api_key = sys.stdin.readline().strip()
        if not api_key:
            fail(
                "`--api-key -` read no key from stdin; pipe the key in, or give `--api-key ''` "
                "to remove the stored one.",
                contract.EXIT_INVALID,
            )
    return api_key


def _as_json(settings: dict[str, Effective]) -> dict[str, dict[str, Any]]:
    return {
        name: (
            {"set": found.is_set, "from": found.source}
            if name == "api_key"
            else {"value": found.value, "from": found.source}
        )
        for name, found in settings.items()
    }


def _print_table(settings: dict[str, Effective]) -> None:
    rows = [("setting", "value", "from")]
    rows += [(name, _shown(name, found), found.source) for name, found in settings.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for name, value, source in rows:
        click.echo(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}")


def _shown(name: str, found: Effective) -> str:
    """A value in words: never a Python repr, never the key."""
    if name == "api_key":
        return "set" if found.is_set else "not set"
    if found.value is None:
        return "none" if name == "daily_budget_usd" else "not set"
    if isinstance(found.value, float):
        return f"${found.value:.2f}" + (" a day" if name == "daily_budget_usd" else " a run")
    return found.value
