"""`generate`, `remix`, `status`, `wait`, `balance`: thin commands over `fluxclaw.Client`.

The task id reaches stderr (and the history file) as soon as the task exists, so an interrupted
or timed-out run is resumed with `fluxclaw wait ID` instead of paid for twice.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fluxclaw import contract
from fluxclaw.cli.common import (
    connection_options,
    fail,
    handle_errors,
    output_options,
    setup_debug_logging,
)
from fluxclaw.config import AGENT_OUTPUT_DIR

if TYPE_CHECKING:
    from fluxclaw.cli.progress import Progress
    from fluxclaw.client import Client
    from fluxclaw.history import History
    from fluxclaw.models import Result
    from fluxclaw.polling import PollPolicy

SANDBOX_SPEED_ENV = "FLUXCLAW_SANDBOX_SPEED"
# Scales the poll schedule's expected generation times: 1/X against a sandbox run at --speed X.
TIME_SCALE_ENV = "FLUXCLAW_TIME_SCALE"
OPENCLAW_ENV = "OPENCLAW_SHELL"  # OpenClaw sets OPENCLAW_SHELL=exec for commands it runs
NO_KEY = (
    "no RunAPI key: set RUNAPI_API_KEY or run `fluxclaw config --api-key KEY`; "
    "add --sandbox to try everything offline at no cost."
)


@contextmanager
def resumable(history: History | None, row: int | None, task_id: str) -> Iterator[None]:
    """Ctrl-C after the task exists: record it and say how to resume (the task keeps running)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: task {task_id} keeps running; resume with: fluxclaw wait {task_id}",
            err=True,
        )
        if history and row:
            history.update(row, status="interrupted")
        sys.exit(130)


@contextmanager
def endpoint(
    api_key: str | None, base_url: str | None, *, sandbox: bool, debug: bool
) -> Iterator[tuple[str, str, PollPolicy]]:
    """Key, base URL and poll policy for the configured API, or for a sandbox started just for
    this command (shared by the sync commands and the async MCP server)."""
    from fluxclaw.config import resolve_settings
    from fluxclaw.polling import PollPolicy

    if sandbox:
        from fluxclaw.sandbox.server import SandboxServer

        speed = _positive_env(SANDBOX_SPEED_ENV, 3.0)
        with SandboxServer(speed=speed) as server:
            if debug:
                setup_debug_logging(None)
            click.echo(f"sandbox: {server.base_url} (placeholder images, no cost)", err=True)
            yield "sandbox", server.base_url, PollPolicy(time_scale=1 / speed)
        return
    settings = resolve_settings(api_key, base_url)
    if debug:
        setup_debug_logging(settings.api_key)
    if not settings.api_key:
        fail(NO_KEY, contract.EXIT_AUTH)
    scale = _positive_env(TIME_SCALE_ENV, 1.0)
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


@contextmanager
def connect(
    api_key: str | None, base_url: str | None, *, sandbox: bool, debug: bool
) -> Iterator[Client]:
    """A client for the configured API, or for a sandbox started just for this command."""
    from fluxclaw.client import Client

    with (
        endpoint(api_key, base_url, sandbox=sandbox, debug=debug) as (key, url, poll),
        Client(api_key=key, base_url=url, poll=poll) as client,
    ):
        yield client


def slug(prompt: str, words: int = 6) -> str:
    found = re.findall(r"[a-z0-9]+", prompt.lower())
    return "-".join(found[:words])[:48] or "image"


def save_result(
    result: Result, output: str | None, image_format: str | None, stem_time: float
) -> list[str]:
    """Save every image: into a folder as <time>-<prompt slug>-<task id>, or to the file given."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(stem_time))
    stem = f"{stamp}-{slug(result.prompt or '')}-{result.task_id[:8]}"
    fmt: Any = image_format
    saved = result.save(output, format=fmt, stem=stem)
    return [str(image.path.resolve()) for image in saved]


def adopt(
    history: History | None,
    row: int | None,
    task_id: str,
    action: contract.Action | None,
    base_url: str,
    model: str | None = None,
    prompt: str | None = None,
) -> int | None:
    """A task id from elsewhere (another machine, the API, a script): give it a history row."""
    if history is None or row is not None:
        return row
    new = history.start(
        action=action or "text_to_image",
        model=model or "",
        prompt=prompt or "",
        params={},
        idempotency_key=None,
        base_url=base_url,
    )
    history.update(new, task_id=task_id)
    return new


def finish(
    client: Client,
    history: History | None,
    row: int | None,
    task_id: str,
    *,
    action: contract.Action | None,
    timeout: float | None,
    output: str | None,
    image_format: str | None,
    as_json: bool,
    progress: Progress,
    sandbox: bool = False,
    openclaw: bool = False,
) -> None:
    """Wait for a task, save its images, record it, and print the paths (or JSON)."""
    from fluxclaw import errors

    progress.begin(f"task {task_id}")
    try:
        result = client.wait(
            task_id,
            action=action,
            timeout=timeout,
            on_update=lambda status: progress.status(status.status),
        )
    except errors.TaskFailedError as error:
        row = adopt(history, row, task_id, action, client.base_url)
        if history and row:
            history.update(row, status="failed", error=error.message)
        raise
    except errors.TaskTimeoutError:
        if history and row:
            history.update(row, status="timeout")
        raise
    finally:
        progress.end()
    urls = [image.url for image in result.images]
    row = adopt(history, row, task_id, result.action, client.base_url, result.model, result.prompt)
    if history and row:
        history.update(row, status=result.status, cost=result.cost_usd, urls=urls)
    paths = save_result(result, output, image_format, time.time())
    if history and row:
        history.update(row, paths=paths)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "paths": paths, "sandbox": sandbox}))
    else:
        for path in paths:
            # OpenClaw attaches a file named on its own line as MEDIA:<absolute path>.
            click.echo(f"MEDIA:{path}" if openclaw else path)
    cost = "unknown cost" if result.cost_usd is None else f"${result.cost_usd:.2f}"
    progress.note(f"done: {len(paths)} image(s), {cost}, {progress.elapsed():.1f}s")


def create_options(func: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "-m",
                "--model",
                default="pro",
                show_default=True,
                help="pro, flex, max or a full model id.",
            ),
            click.option(
                "-a",
                "--aspect-ratio",
                metavar="RATIO",
                help=f"One of {', '.join(contract.ASPECT_RATIOS)} (remix: also auto).",
            ),
            click.option(
                "-r",
                "--resolution",
                type=click.Choice(contract.RESOLUTIONS),
                help="Output resolution (default 1k).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                default=600.0,
                show_default=True,
                help="Seconds to wait before giving up (resumable).",
            ),
            click.option(
                "--async",
                "no_wait",
                is_flag=True,
                help="Print the task id and return at once; `fluxclaw wait ID` later.",
            ),
            click.option("--callback-url", metavar="URL", help="Called when the task ends."),
            click.option(
                "--no-safety-checker",
                is_flag=True,
                help="Turn the safety checker off (Pro and Flex).",
            ),
            click.option(
                "--sandbox",
                is_flag=True,
                help="Run against a sandbox started for this command (no key, no cost).",
            ),
            click.option("--no-history", is_flag=True, help="Do not record this task."),
            click.option(
                "--openclaw",
                is_flag=True,
                help="OpenClaw mode: save under ./generated/fluxclaw/ and print MEDIA:<path> "
                "lines (on by default when OPENCLAW_SHELL is set).",
            ),
        ]
    ):
        func = decorator(func)
    return func


def run_create(action: contract.Action, prompt: str, sources: tuple[str, ...], **opts: Any) -> None:
    from fluxclaw.cli.progress import Progress
    from fluxclaw.history import History

    if prompt == "-":
        prompt = sys.stdin.read().strip()
    try:
        model = contract.resolve_model(opts["model"], action)
    except ValueError as error:
        fail(str(error), contract.EXIT_INVALID)
    options: dict[str, Any] = {
        "model": model.id,
        "aspect_ratio": opts["aspect_ratio"],
        "resolution": opts["resolution"],
        "safety_checker": False if opts["no_safety_checker"] else None,
        "callback_url": opts["callback_url"],
        "idempotency_key": str(uuid.uuid4()),
    }
    options = {k: v for k, v in options.items() if v is not None}
    progress = Progress()
    history = None if opts["no_history"] else History()
    openclaw = opts["openclaw"] or bool(os.environ.get(OPENCLAW_ENV))
    if openclaw and not opts["output"]:
        opts["output"] = AGENT_OUTPUT_DIR
    with connect(
        opts["api_key"], opts["base_url"], sandbox=opts["sandbox"], debug=opts["debug"]
    ) as client:
        row = None
        if history:
            row = history.start(
                action=action,
                model=model.id,
                prompt=prompt,
                params={k: v for k, v in options.items() if k != "idempotency_key"}
                | ({"sources": list(sources)} if sources else {}),
                idempotency_key=options["idempotency_key"],
                base_url=client.base_url,
            )
        from fluxclaw import errors

        try:
            if action == "remix_image":
                task = client.submit_remix(prompt, list(sources), **options)
            else:
                task = client.submit_generate(prompt, **options)
        except errors.FluxclawError as error:
            if history and row:
                history.update(row, status="rejected", error=error.message)
            raise
        with resumable(history, row, task.id):
            if history and row:
                history.update(row, task_id=task.id, status=task.status)
            progress.note(f"task {task.id} submitted ({model.id})")
            if opts["no_wait"]:
                payload = {"task_id": task.id, "status": task.status, "action": action}
                click.echo(json.dumps(payload) if opts["as_json"] else task.id)
                return
            finish(
                client,
                history,
                row,
                task.id,
                action=action,
                timeout=opts["timeout"],
                output=opts["output"],
                image_format=opts["image_format"],
                as_json=opts["as_json"],
                progress=progress,
                sandbox=opts["sandbox"],
                openclaw=openclaw,
            )


@click.command()
@click.argument("prompt")
@create_options
@output_options
@connection_options
@handle_errors
def generate(prompt: str, **opts: Any) -> None:
    """Generate an image from PROMPT (`-` reads it from stdin) and save it."""
    run_create("text_to_image", prompt, (), **opts)


@click.command()
@click.argument("prompt")
@click.option(
    "-i",
    "--image",
    "images",
    multiple=True,
    required=True,
    metavar="SRC",
    help="Source image: a URL or a local file (repeat for up to 8).",
)
@create_options
@output_options
@connection_options
@handle_errors
def remix(prompt: str, images: tuple[str, ...], **opts: Any) -> None:
    """Remix source images (-i) following PROMPT, and save the result."""
    for source in images:
        if not contract.is_http_url(source) and not Path(source).is_file():
            fail(f"source image {source!r} is not a URL or a readable file.", contract.EXIT_INVALID)
    run_create("remix_image", prompt, images, **opts)


@click.command()
@click.argument("task_id")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True)
@click.option("--openclaw", is_flag=True, help="OpenClaw mode, as for generate.")
@output_options
@connection_options
@handle_errors
def wait(
    task_id: str,
    timeout: float,
    openclaw: bool,
    output: str | None,
    image_format: str | None,
    as_json: bool,
    api_key: str | None,
    base_url: str | None,
    debug: bool,
) -> None:
    """Resume a task by its id: wait for it, save its images, record them."""
    from fluxclaw.cli.progress import Progress
    from fluxclaw.history import History

    history = History()
    entry = history.find(task_id)
    action: Any = entry.action if entry else None
    row = entry.id if entry else None
    openclaw = openclaw or bool(os.environ.get(OPENCLAW_ENV))
    if openclaw and not output:
        output = AGENT_OUTPUT_DIR
    with (
        connect(api_key, base_url, sandbox=False, debug=debug) as client,
        resumable(history, row, task_id),
    ):
        finish(
            client,
            history,
            row,
            task_id,
            action=action,
            timeout=timeout,
            output=output,
            image_format=image_format,
            as_json=as_json,
            progress=Progress(),
            openclaw=openclaw,
        )


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@connection_options
@handle_errors
def status(
    task_id: str, as_json: bool, api_key: str | None, base_url: str | None, debug: bool
) -> None:
    """Show a task's status once, without waiting."""
    from fluxclaw.history import History

    entry = History().find(task_id)
    action: Any = entry.action if entry else None
    with connect(api_key, base_url, sandbox=False, debug=debug) as client:
        found = client.get(task_id, action=action)
    urls = [image.url for image in found.images]
    payload = {
        "task_id": found.task_id,
        "status": found.status,
        "action": found.action,
        "images": urls,
        "cost_usd": found.cost_usd,
        "error": found.error,
    }
    if as_json:
        click.echo(json.dumps(payload))
        return
    line = f"{found.task_id} {found.status}"
    if found.error:
        line += f": {found.error}"
    click.echo(line)
    for url in urls:
        click.echo(url)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@connection_options
@handle_errors
def balance(as_json: bool, api_key: str | None, base_url: str | None, debug: bool) -> None:
    """Show the account's balance."""
    with connect(api_key, base_url, sandbox=False, debug=debug) as client:
        found = client.balance()
    if as_json:
        click.echo(json.dumps(found))
        return
    cents = found.get("balance_cents")
    click.echo("unknown" if not isinstance(cents, int) else f"${cents / 100:.2f}")
