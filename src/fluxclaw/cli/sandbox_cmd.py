"""`fluxclaw sandbox`: run the local RunAPI-compatible server in the foreground.

The first stdout line is the base URL, printed once connections are accepted, so scripts can do
`BASE=$(fluxclaw sandbox --port 0 | head -n1)`-style startup without sleeping or guessing ports.
"""

from __future__ import annotations

import click

from fluxclaw import contract
from fluxclaw.cli.common import fail


@click.command(
    "sandbox",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0: a free port."
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(*contract.SANDBOX_SPEEDS),
    help="Divide generation times by this factor (stated on every answer).",
)
@click.option(
    "--faults",
    default=None,
    metavar="SPEC",
    help='Injected faults, e.g. "500=0.05,503=0.05,429=0.05,reset=0.02,drop=0.02,'
    'garbage=0.01,html=0.01,fail=0.1,slow=2@0.1".',
)
@click.option(
    "--api-key",
    default=None,
    envvar="FLUXCLAW_SANDBOX_API_KEY",
    help="Accept only this bearer key (default: any non-empty key).",
)
@click.option(
    "--balance",
    "balance_usd",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Starting balance in US dollars.",
)
@click.option(
    "--rate-limit",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Requests per second per key before 429 (default: no limit).",
)
@click.option("--seed", default=0, show_default=True, help="Seed for durations and faults.")
@click.option(
    "--max-price-cents",
    default=None,
    type=click.IntRange(min=0),
    help="Sandbox placeholder price of one Max image (RunAPI's is unknown) [default: 16].",
)
@click.option(
    "--retry-after/--no-retry-after",
    default=False,
    show_default=True,
    help="Send Retry-After on unfinished task status answers.",
)
@click.option(
    "--image-format",
    default="png",
    show_default=True,
    type=click.Choice(["png", "jpeg", "webp"], case_sensitive=False),
    help="Format of every task's image; a prompt's [sandbox:format=X] overrides it.",
)
@click.option(
    "--c2pa/--no-c2pa",
    default=False,
    show_default=True,
    help="Sign every image with C2PA Content Credentials from a test CA made at start (its "
    "root: /_sandbox/c2pa/ca.pem); a prompt's [sandbox:c2pa] signs just its image. Needs "
    "fluxclaw[c2pa].",
)
def command(
    host: str,
    port: int,
    speed: float,
    faults: str | None,
    api_key: str | None,
    balance_usd: float,
    rate_limit: float | None,
    seed: int,
    max_price_cents: int | None,
    retry_after: bool,
    image_format: str,
    c2pa: bool,
) -> None:
    """Run a local RunAPI-compatible Flux 2 server (no key, no cost).

    Prints its base URL as the first line on stdout; Ctrl-C or SIGTERM stops it.
    """
    from fluxclaw import sandbox

    if not sandbox.available():
        fail(sandbox.missing("fluxclaw sandbox"), contract.EXIT_OTHER)
    from fluxclaw.credentials import CredentialsUnavailableError
    from fluxclaw.sandbox.faults import FaultSpecError
    from fluxclaw.sandbox.server import SandboxServer
    from fluxclaw.sandbox.state import MAX_PRICE_CENTS

    try:
        server = SandboxServer(
            host=host,
            port=port,
            speed=speed,
            faults=faults,
            api_key=api_key,
            balance_usd=balance_usd,
            rate_limit=rate_limit,
            seed=seed,
            retry_after=retry_after,
            max_price_cents=MAX_PRICE_CENTS if max_price_cents is None else max_price_cents,
            image_format=image_format.lower(),
            c2pa=c2pa,
        )
    except FaultSpecError as error:
        raise click.BadParameter(str(error), param_hint="--faults") from error
    except CredentialsUnavailableError as error:
        fail(str(error), contract.EXIT_OTHER)
    try:
        server.serve_forever()
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from error
