"""What every command shares: connection and output options, and turning errors into exit codes.

Errors print one line on stderr that says what to do and exit with the contract's code; a
traceback appears only with `--debug`, and the API key is scrubbed from anything printed.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from fluxclaw import contract

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
    return func


def output_options(func: Callable[P, R]) -> Callable[P, R]:
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(
        func
    )
    func = click.option(
        "--format",
        "image_format",
        type=click.Choice(FORMATS),
        help="Convert saved images (jpeg/webp are smaller for chat channels).",
    )(func)
    func = click.option(
        "-o",
        "--output",
        metavar="DIR|FILE",
        help="Folder to save into, or a file name (default: the current folder).",
    )(func)
    return func


class Redactor(logging.Filter):
    """Scrubs a secret from every log record, whatever logger produced it."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            message = record.getMessage()
            if self.secret in message:
                record.msg = message.replace(self.secret, "***")
                record.args = None
        return True


def setup_debug_logging(secret: str | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    handler.addFilter(Redactor(secret))
    logger = logging.getLogger("fluxclaw")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)


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
            fail(scrub(str(error), kwargs), error.exit_code, error.task_id)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as error:
            if debug:
                raise
            text = scrub(f"{type(error).__name__}: {error}", kwargs)
            fail(f"internal error ({text}); rerun with --debug to see where it happened.")
        raise AssertionError("unreachable")  # pragma: no cover

    return run


def scrub(text: str, kwargs: dict[str, Any]) -> str:
    import os

    for secret in (kwargs.get("api_key"), os.environ.get("RUNAPI_API_KEY")):
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())
