"""What every command shares: connection and output options, the endpoint a command talks to
(the configured API or a one-run sandbox), and turning errors into exit codes.

Errors print one line on stderr that says what to do and exit with the contract's code; a
traceback appears only with `--debug`, and the API key is scrubbed from anything printed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import click

from fluxclaw import contract

if TYPE_CHECKING:
    from fluxclaw.polling import PollPolicy

P = ParamSpec("P")
R = TypeVar("R")

FORMATS = ("png", "jpeg", "webp")


def connection_options(func: Callable[P, R]) -> Callable[P, R]:
    func = click.option(
        "--debug", is_flag=True, help="Log each HTTP exchange (key redacted); show tracebacks."
    )(func)
    func = click.option(
        "--base-url", metavar="URL", help="API base (default: RUNAPI_BASE_URL, config, runapi.ai)."
    )(func)
    func = click.option(
        "--api-key", metavar="KEY", help="RunAPI key (default: RUNAPI_API_KEY, then the config)."
    )(func)
    for name, variable, what in (
        ("--c2pa-key", "FLUXCLAW_C2PA_KEY", "The private key of --c2pa-cert (PEM)."),
        (
            "--c2pa-cert",
            "FLUXCLAW_C2PA_CERT",
            "Sign saved images with this C2PA certificate chain (PEM; fluxclaw[c2pa]).",
        ),
    ):
        func = click.option(
            name, metavar="PEM", expose_value=False, callback=_to_env(variable), help=what
        )(func)
    return click.option(
        "--allow-http",
        is_flag=True,
        expose_value=False,
        callback=_allow_http,
        help="Allow a plain http:// base URL on another machine (the key goes in clear text).",
    )(func)


def _to_env(variable: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    """An option every client of this command reads, as its environment variable."""

    def store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value:
            os.environ[variable] = value

    return store


def _allow_http(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Every client this command makes may then use plain http (each says so on stderr)."""
    if value:
        from fluxclaw._core import ALLOW_HTTP_ENV

        os.environ[ALLOW_HTTP_ENV] = "1"


def output_options(func: Callable[P, R]) -> Callable[P, R]:
    func = click.option(
        "--open",
        "open_files",
        is_flag=True,
        help="Open the saved images with the system's viewer (xdg-open, open or start).",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(
        func
    )
    func = click.option(
        "--format",
        "image_format",
        type=click.Choice(FORMATS, case_sensitive=False),
        help="Convert saved images (jpeg/webp are smaller for chat channels).",
    )(func)
    func = click.option(
        "-o",
        "--output",
        metavar="DIR|FILE",
        help="Folder to save into, or a file name (default: the current folder).",
    )(func)
    return func


def setup_debug_logging() -> None:
    """Every HTTP exchange on stderr, each line (and traceback) with the key scrubbed."""
    from fluxclaw.redaction import log_to_stderr

    log_to_stderr("debug: %(name)s: %(message)s", logging.DEBUG)


def fail(message: str, code: int = contract.EXIT_OTHER, task_id: str | None = None) -> NoReturn:
    """Exit with one line on stderr (and, under --json, one JSON object on stdout, so a script
    never loses the task id)."""
    click.echo(f"error: {message}", err=True)
    if _json_failures():
        click.echo(json.dumps({"task_id": task_id, "error": message, "exit_code": code}))
    sys.exit(code)


def _json_failures() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.params.get("as_json"))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Typed errors become one line and their exit code; anything else is a bug (see --debug)."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        from fluxclaw.errors import FluxclawError

        debug = bool(kwargs.get("debug"))
        try:
            return func(*args, **kwargs)
        except FluxclawError as error:
            if debug:
                logging.getLogger("fluxclaw").debug("error", exc_info=True)
            invalid = error.default_code == "validation_failed"  # the user's own words back
            text = cli_words(str(error)) if invalid else str(error)
            fail(scrub(text), error.exit_code, error.task_id)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as error:
            if debug:  # the whole traceback, scrubbed like every other line
                click.echo(scrub(traceback.format_exc()), err=True, nl=False)
            text = scrub(f"{type(error).__name__}: {error}")
            fail(f"internal error ({text}); rerun with --debug to see where it happened.")
        raise AssertionError("unreachable")  # pragma: no cover

    return run


# The contract's field names, as this command line spells them (its options), so a refusal
# names what the user typed: `-m max does not take --no-safety-checker`, not the API's body.
_CLI_WORDS: tuple[tuple[str, str], ...] = (
    (r"\bmodel='?flux-2-(pro|flex|max)-(?:text-to-image|remix-image)'?", r"-m \1"),
    (r"\bmodel='([^']*)'", r"-m \1"),
    (r"\bmodel=(\S+)", r"-m \1"),
    (r"\baspect_ratio=(\S+)", r"-a \1"),
    (r"\baspect_ratio\b", "-a"),
    (r"\boutput_resolution=(\S+)", r"-r \1"),
    (r"\boutput_resolution\b", "-r"),
    (r"\bmust not include enable_safety_checker\b", "does not take --no-safety-checker"),
    (r"\benable_safety_checker\b", "--no-safety-checker"),
    (r"\bcallback_url=(\S+)", r"--callback-url \1"),
    (r"\bcallback_url\b", "--callback-url"),
    (r"\bsource_image_urls\b", "-i sources"),
)


def cli_words(text: str) -> str:
    """A validation message in the command line's own words (see `_CLI_WORDS`)."""
    import re

    for pattern, replacement in _CLI_WORDS:
        text = re.sub(pattern, replacement, text)
    return text


def confirm_spend(usd: float | None, what: str, *, yes: bool) -> None:
    """The one confirmation rule, for every command that pays: at a terminal, a run estimated
    above `fluxclaw config --confirm-above` (default $1) asks first; off a terminal (scripts,
    agents) nothing asks. An unknown price asks nothing it could not state."""
    if yes or usd is None or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return
    from fluxclaw import config

    limit = config.confirm_above_from(config.load_config())
    if usd <= limit:
        return
    question = (
        f"{what} is estimated at ${usd:.2f}, above ${limit:.2f} (fluxclaw config "
        "--confirm-above); go ahead?"
    )
    if not click.confirm(question, default=False, err=True):
        fail("nothing was sent; pass --yes to run it without asking.", contract.EXIT_OTHER)


def scrub(text: str) -> str:
    """One line with every key fluxclaw was given replaced by ***."""
    from fluxclaw.redaction import one_line

    return one_line(text)


SANDBOX_SPEED_ENV = "FLUXCLAW_SANDBOX_SPEED"
# Scales the poll schedule's expected generation times: 1/X against a sandbox run at --speed X.
# Unset, the server's stated speed decides (a sandbox states it on every answer).
TIME_SCALE_ENV = "FLUXCLAW_TIME_SCALE"
NO_KEY = (
    "no RunAPI key: set RUNAPI_API_KEY or run `fluxclaw config --api-key KEY`; "
    "add --sandbox to try everything offline at no cost."
)


@contextmanager
def endpoint(
    api_key: str | None, base_url: str | None, *, sandbox: bool, debug: bool
) -> Iterator[tuple[str, str, PollPolicy]]:
    """Key, base URL and poll policy for the configured API, or for a sandbox started just for
    this command (shared by the sync commands and the async MCP server)."""
    from fluxclaw.config import resolve_settings
    from fluxclaw.polling import PollPolicy

    if sandbox:
        from fluxclaw import sandbox as local

        if not local.available():
            fail(local.missing("--sandbox"), contract.EXIT_OTHER)
        from fluxclaw.sandbox.server import SandboxServer

        speed = _positive_env(SANDBOX_SPEED_ENV, 3.0)
        low, high = contract.SANDBOX_SPEEDS
        if not low <= speed <= high:
            fail(
                f"{SANDBOX_SPEED_ENV}={speed:g} must be from {low:g} to {high:g}.",
                contract.EXIT_INVALID,
            )
        with SandboxServer(speed=speed) as server:
            if debug:
                setup_debug_logging()
            click.echo(f"sandbox: {server.base_url} (placeholder images, no cost)", err=True)
            # Any key opens a one-run sandbox; this one reads as what it is wherever it shows.
            yield "sk-one-run-sandbox", server.base_url, PollPolicy(time_scale=1 / speed)
        return
    settings = resolve_settings(api_key, base_url)
    if debug:
        setup_debug_logging()
    if not settings.api_key:
        fail(NO_KEY, contract.EXIT_AUTH)
    scale = _positive_env(TIME_SCALE_ENV, 1.0) if os.environ.get(TIME_SCALE_ENV) else None
    yield settings.api_key, settings.base_url, PollPolicy(time_scale=scale)


def _positive_env(name: str, default: float) -> float:
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        fail(
            f"{name}={raw} must be a number above 0; unset it for the default ({default:g}).",
            contract.EXIT_INVALID,
        )
    return value
