"""`generate`, `remix`, `status`, `wait`, `resume`, `balance`: thin doors on the job engine.

The engine (`fluxclaw.jobs`) checks, records, submits, waits, saves and records; these commands
turn options into a `Job`, show progress on stderr and print results on stdout. The task id
reaches stderr (and the history) as soon as the task exists, so an interrupted or timed-out run
is finished with `fluxclaw wait ID` (or `fluxclaw resume`) instead of paid for twice.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fluxclaw import contract
from fluxclaw.cli.common import (
    cli_words,
    confirm_spend,
    connection_options,
    endpoint,
    fail,
    handle_errors,
    output_options,
    scrub,
)
from fluxclaw.config import AGENT_OUTPUT_DIR

if TYPE_CHECKING:
    from fluxclaw.cli.progress import Progress
    from fluxclaw.client import Client
    from fluxclaw.history import Entry, History
    from fluxclaw.jobs import Job, JobResult
    from fluxclaw.models import TaskStatus

MAX_COUNT = 20  # -n: tasks one command runs at once
OPENCLAW_ENV = "OPENCLAW_SHELL"  # OpenClaw sets OPENCLAW_SHELL=exec for commands it runs


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


class Watch:
    """Progress for one job on stderr, and the task id once the server has given one."""

    def __init__(self, progress: Progress, model: str | None = None) -> None:
        self.progress = progress
        self.model = model
        self.task_id: str | None = None

    def __call__(self, status: TaskStatus) -> None:
        if self.task_id is None:
            self.task_id = status.task_id
            model = f" ({self.model})" if self.model else ""
            self.progress.note(f"task {status.task_id} submitted{model}")
            self.progress.begin(f"task {status.task_id}")
        self.progress.status(status.status)


@contextmanager
def interruptible(watch: Watch, *, key: str | None, sandbox: bool) -> Iterator[None]:
    """Ctrl-C: the engine has recorded where the job stood; say how to finish it (if it can be)."""
    try:
        yield
    except KeyboardInterrupt:
        watch.progress.end()
        task = watch.task_id
        if sandbox:
            what = f"task {task}" if task else "the task"
            line = f"interrupted: {what} ends with this command's one-run sandbox (no cost)"
        elif task:
            line = f"interrupted: task {task} keeps running; resume with: fluxclaw wait {task}"
        else:
            line = (
                "interrupted before RunAPI answered; if the task was made, "
                f"`fluxclaw resume {key}` finishes it without paying twice"
            )
        click.echo(f"\n{line}", err=True)
        sys.exit(130)


def report(
    done: JobResult,
    *,
    as_json: bool,
    openclaw: bool,
    sandbox: bool,
    progress: Progress,
    open_files: bool = False,
    summary: bool = True,
) -> None:
    """Print a finished job: paths (or MEDIA: lines, or JSON) on stdout, a summary on stderr;
    with --open, hand each saved image to the system's viewer."""
    progress.end()
    paths = [str(path) for path in done.paths]
    if as_json:
        click.echo(json.dumps({**done.to_dict(), "sandbox": sandbox}))
    else:
        for path in paths:
            # OpenClaw attaches a file named on its own line as MEDIA:<absolute path>.
            click.echo(f"MEDIA:{path}" if openclaw else path)
    if summary:
        _done_note(progress, len(paths), [done.cost_usd])
    for path in paths if open_files else ():
        # click.launch: xdg-open, open or start, whichever the system has; not waited for
        if click.launch(path, wait=False) != 0:
            progress.note(f"warning: could not open {path}: no program to open images found")


def _done_note(progress: Progress, images: int, costs: list[float | None]) -> None:
    cost = "unknown cost" if None in costs else f"${sum(c or 0.0 for c in costs):.2f}"
    progress.note(f"done: {images} image(s), {cost}, {progress.elapsed():.1f}s")


def _submitted(done: JobResult, action: contract.Action, as_json: bool) -> None:
    """--async: the task id (or a JSON line with it) as soon as the task exists."""
    payload = {"task_id": done.task_id, "status": done.status, "action": action}
    click.echo(json.dumps(payload) if as_json else done.task_id)


def create_options(func: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "-n",
                "--count",
                type=click.IntRange(1, MAX_COUNT),
                default=1,
                show_default=True,
                help=f"Make this many images, each its own task, at once (at most {MAX_COUNT}); "
                "-o x.png names them x-1.png, x-2.png, ...",
            ),
            click.option(
                "-f",
                "--prompt-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Read the prompt from this UTF-8 text file (instead of PROMPT).",
            ),
            click.option(
                "-m",
                "--model",
                default=contract.DEFAULT_FAMILY,
                show_default=True,
                help="pro, flex, max or a full model id.",
            ),
            click.option(
                "-a",
                "--aspect-ratio",
                metavar="RATIO",
                help=f"One of {', '.join(contract.ASPECT_RATIOS)} (default "
                f"{contract.DEFAULT_ASPECT_RATIO}; remix with pro or flex: also "
                f"{contract.AUTO_RATIO}).",
            ),
            click.option(
                "-r",
                "--resolution",
                type=click.Choice(contract.RESOLUTIONS, case_sensitive=False),
                help=f"Output resolution (default {contract.DEFAULT_RESOLUTION}; max: "
                f"{', '.join(contract.resolutions_for('max'))} only).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                default=600.0,
                show_default=True,
                help="Seconds the whole job may take: create, wait, save (resumable after).",
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
            click.option(
                "--no-history",
                is_flag=True,
                help="Keep no prompt or path of this task (its cost is still counted, so the "
                "daily budget holds).",
            ),
            click.option(
                "--force",
                is_flag=True,
                help="Overwrite the file named by -o if it exists (else: refused before paying).",
            ),
            click.option(
                "-y",
                "--yes",
                is_flag=True,
                help="Do not ask at a terminal before a run estimated above `fluxclaw config "
                "--confirm-above` (default $1).",
            ),
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


def _the_prompt(given: str | None, file: Path | None) -> str:
    """PROMPT, stdin (`-`) or -f FILE: exactly one. A PROMPT like `@notes.txt` that names a file
    is refused, not paid for as those ten characters."""
    if file is not None:
        if given is not None:
            fail(
                "give the prompt once: as PROMPT or with -f FILE, not both.", contract.EXIT_INVALID
            )
        try:
            return file.expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            fail(
                f"cannot read the prompt file {file} ({reason or error}); check the path.",
                contract.EXIT_INVALID,
            )
    if given is None:
        fail("no prompt: give it as PROMPT, `-` to read stdin, or -f FILE.", contract.EXIT_INVALID)
    if given == "-":
        return sys.stdin.read().strip()
    if given.startswith("@") and Path(given[1:]).expanduser().is_file():
        fail(
            f"the prompt {given!r} names a file; to send its text, use -f {given[1:]}, or write "
            "the prompt itself.",
            contract.EXIT_INVALID,
        )
    return given


def run_create(
    action: contract.Action, prompt: str | None, sources: tuple[str, ...], **opts: Any
) -> None:
    from fluxclaw import jobs
    from fluxclaw.cli.progress import Progress
    from fluxclaw.errors import FluxclawError
    from fluxclaw.history import History
    from fluxclaw.pricing import estimate_cost

    prompt = _the_prompt(prompt, opts.pop("prompt_file"))
    if opts["sandbox"] and opts["no_wait"]:
        fail(
            "--async cannot be used with --sandbox: the sandbox ends with this command, so its "
            "task could never be collected; drop --async.",
            contract.EXIT_INVALID,
        )
    openclaw = opts["openclaw"] or bool(os.environ.get(OPENCLAW_ENV))
    output = opts["output"] or (AGENT_OUTPUT_DIR if openclaw else None)
    job = jobs.Job(
        action=action,
        prompt=prompt,
        sources=sources,
        model=opts["model"],
        aspect_ratio=opts["aspect_ratio"],
        resolution=opts["resolution"],
        safety_checker=False if opts["no_safety_checker"] else None,
        callback_url=opts["callback_url"],
        output=output,
        format=opts["image_format"],
        overwrite=opts["force"],
    )
    try:
        model = contract.resolve_model(job.model, action).id
    except ValueError as error:
        fail(cli_words(str(error)), contract.EXIT_INVALID)
    sandbox = opts["sandbox"]
    if not sandbox:  # a one-run sandbox costs nothing to ask about
        count = opts["count"]
        try:
            cost = estimate_cost(
                model, job.resolution or contract.DEFAULT_RESOLUTION, count, action=action
            ).total_usd
        except FluxclawError:
            cost = None  # the create refuses it, in its own words, before anything is paid
        images = f"{count} images" if count > 1 else "this image"
        confirm_spend(cost, f"Making {images} ({model})", yes=opts["yes"])
    if opts["count"] > 1:
        run_many(job, model, openclaw, opts)
        return
    progress = Progress()
    watch = Watch(progress, model)
    with (
        connect(opts["api_key"], opts["base_url"], sandbox=sandbox, debug=opts["debug"]) as client,
        interruptible(watch, key=job.idempotency_key, sandbox=sandbox),
    ):
        done = jobs.run(
            client,
            job,
            history=History(private=opts["no_history"]),
            wait=not opts["no_wait"],
            timeout=opts["timeout"],
            on_update=watch,
            sandbox=sandbox,
        )
        if opts["no_wait"]:
            _submitted(done, action, opts["as_json"])
            return
        report(
            done,
            as_json=opts["as_json"],
            openclaw=openclaw,
            sandbox=sandbox,
            progress=progress,
            open_files=opts["open_files"],
        )


class Tally:
    """One progress display for several tasks: how many are done, how many still run."""

    def __init__(self, progress: Progress, count: int, model: str) -> None:
        self.progress, self.count, self.model = progress, count, model
        self.statuses: dict[str, str] = {}

    def watch(self) -> Callable[[TaskStatus], None]:
        def seen(status: TaskStatus) -> None:
            if status.task_id not in self.statuses:
                self.progress.note(f"task {status.task_id} submitted ({self.model})")
            self.statuses[status.task_id] = status.status
            done = sum(s in contract.TERMINAL_STATUSES for s in self.statuses.values())
            self.progress.status(f"{done} of {self.count} done")

        return seen

    def running(self) -> list[str]:
        return [t for t, s in self.statuses.items() if s not in contract.TERMINAL_STATUSES]


def run_many(job: Job, model: str, openclaw: bool, opts: dict[str, Any]) -> None:
    """-n: `count` jobs like `job` at once on one async client, each its own task, key and
    ledger row (so caps, re-runs and `fluxclaw resume` treat each as any other job)."""
    import asyncio
    from dataclasses import replace

    from fluxclaw import jobs, saving
    from fluxclaw.cli.progress import Progress
    from fluxclaw.client import AsyncClient
    from fluxclaw.errors import FluxclawError
    from fluxclaw.history import History
    from fluxclaw.job_types import JobResult

    sandbox, count = opts["sandbox"], opts["count"]
    many = [
        replace(job, output=saving.numbered(job.output, i), idempotency_key=str(uuid.uuid4()))
        for i in range(1, count + 1)
    ]
    progress = Progress()
    tally = Tally(progress, count, model)
    progress.begin(f"{count} tasks")

    async def all_of(key: str, url: str, poll: Any) -> list[Any]:
        history = History(private=opts["no_history"])
        async with AsyncClient(api_key=key, base_url=url, poll=poll) as client:
            return await asyncio.gather(
                *(
                    jobs.arun(
                        client,
                        one,
                        history=history,
                        wait=not opts["no_wait"],
                        timeout=opts["timeout"],
                        on_update=tally.watch(),
                        sandbox=sandbox,
                    )
                    for one in many
                ),
                return_exceptions=True,
            )

    with endpoint(opts["api_key"], opts["base_url"], sandbox=sandbox, debug=opts["debug"]) as (
        key,
        url,
        poll,
    ):
        try:
            results = asyncio.run(all_of(key, url, poll))
        except KeyboardInterrupt:
            progress.end()
            still = tally.running()
            if sandbox:
                line = f"interrupted: {len(still)} task(s) end with this command's one-run sandbox"
            elif still:
                line = (
                    f"interrupted: {len(still)} task(s) keep running ({', '.join(still)}); "
                    "`fluxclaw resume` finishes them without paying twice"
                )
            else:
                line = "interrupted; `fluxclaw resume` finishes any task that was made"
            click.echo(f"\n{line}", err=True)
            sys.exit(130)
    progress.end()
    done = [r for r in results if isinstance(r, JobResult)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if opts["no_wait"]:
        for result in done:
            _submitted(result, job.action, opts["as_json"])
    else:
        for result in done:
            report(
                result,
                as_json=opts["as_json"],
                openclaw=openclaw,
                sandbox=sandbox,
                progress=progress,
                open_files=opts["open_files"],
                summary=False,
            )
        _done_note(progress, sum(len(r.paths) for r in done), [r.cost_usd for r in done])
    if failed:
        first = failed[0]
        if not isinstance(first, FluxclawError):
            raise first
        code = first.exit_code
        fail(f"{len(failed)} of {count} tasks failed; the first: {first}", code, first.task_id)


@click.command()
@click.argument("prompt", required=False)
@create_options
@output_options
@connection_options
@handle_errors
def generate(prompt: str | None, **opts: Any) -> None:
    """Generate an image from PROMPT (`-` reads it from stdin; -f FILE from a file) and save
    it."""
    run_create("text_to_image", prompt, (), **opts)


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "-i",
    "--image",
    "images",
    multiple=True,
    required=True,
    metavar="SRC",
    help=f"Source image: a URL or a local file (repeat for up to {contract.MAX_SOURCES}; max: "
    f"{contract.source_span('max')}).",
)
@create_options
@output_options
@connection_options
@handle_errors
def remix(prompt: str | None, images: tuple[str, ...], **opts: Any) -> None:
    """Remix source images (-i) following PROMPT, and save the result."""
    for source in images:
        if not contract.is_http_url(source) and not Path(source).is_file():
            fail(f"source image {source!r} is not a URL or a readable file.", contract.EXIT_INVALID)
    run_create("remix_image", prompt, images, **opts)


def resume_options(func: Any) -> Any:
    func = click.option("--openclaw", is_flag=True, help="OpenClaw mode, as for generate.")(func)
    func = click.option(
        "--force", is_flag=True, help="Overwrite the file named by -o if it exists."
    )(func)
    return click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=600.0,
        show_default=True,
        help="Seconds to wait for the task before giving up (it keeps running; run again).",
    )(func)


def resolve_ref(history: History, ref: str) -> tuple[str, Entry | None]:
    """The whole task id or key a person means (a start of one that fits one row is enough)
    and its row; an ambiguous start, or one that fits no row and is no task id, is refused
    here, before any key is needed or request sent."""
    entry = history.resolve(ref)
    if entry is None:  # a whole task id the ledger does not know: made elsewhere, maybe
        return str(uuid.UUID(ref.strip())), None
    return entry.task_id or entry.idempotency_key or ref.strip(), entry


def finish_one(
    ref: str,
    *,
    timeout: float,
    openclaw: bool,
    output: str | None,
    image_format: Any,
    force: bool,
    as_json: bool,
    api_key: str | None,
    base_url: str | None,
    debug: bool,
    open_files: bool = False,
) -> None:
    """Finish one recorded job (or a task made elsewhere) by task id or idempotency key."""
    from fluxclaw import jobs
    from fluxclaw.cli.progress import Progress
    from fluxclaw.history import History

    history = History()
    ref, entry = resolve_ref(history, ref)
    if entry is not None:
        jobs.refuse_gone(entry, history)  # before asking for a key it would not need
    openclaw = openclaw or bool(os.environ.get(OPENCLAW_ENV))
    if openclaw and not output:
        output = AGENT_OUTPUT_DIR
    # The row's own API base, unless one is given now: a task lives where it was made.
    url = base_url or (entry.base_url if entry and not entry.sandbox else None)
    progress = Progress()
    watch = Watch(progress, entry.model if entry else None)
    if entry is not None and entry.task_id:
        watch.task_id = entry.task_id
        progress.begin(f"task {entry.task_id}")
    with (
        connect(api_key, url, sandbox=False, debug=debug) as client,
        interruptible(watch, key=entry.idempotency_key if entry else None, sandbox=False),
    ):
        if entry is None:
            watch.task_id = ref
        done = jobs.finish(
            client,
            ref,
            history=history,
            output=output,
            format=image_format,
            overwrite=force,
            timeout=timeout,
            on_update=watch,
        )
        report(
            done,
            as_json=as_json,
            openclaw=openclaw,
            sandbox=False,
            progress=progress,
            open_files=open_files,
        )


@click.command()
@click.argument("task_id")
@resume_options
@output_options
@connection_options
@handle_errors
def wait(task_id: str, **opts: Any) -> None:
    """Resume a task by its id (or a create's idempotency key): wait, save, record.

    Files are named and placed as the original run would have (-o and --format override).
    """
    finish_one(task_id, **opts)


@click.command()
@click.argument("ref", required=False)
@resume_options
@output_options
@connection_options
@handle_errors
def resume(ref: str | None, **opts: Any) -> None:
    """Finish REF (a task id or idempotency key), or every unfinished task in the history.

    A create that got no answer is sent again with its idempotency key, so RunAPI answers with
    the task it made (no second charge).
    """
    from fluxclaw.history import History

    if ref is not None:
        finish_one(ref, **opts)
        return
    pending = History().unfinished()
    if not pending:
        click.echo("nothing to resume: every task in the history has ended", err=True)
        return
    from fluxclaw.errors import FluxclawError

    failures = 0
    for entry in pending:
        label = entry.task_id or entry.idempotency_key or str(entry.id)
        try:
            finish_one(label, **opts)
        except FluxclawError as error:  # one line each; go on with the rest
            failures += 1
            click.echo(f"error: {scrub(str(error))}", err=True)
    if failures:
        fail(f"{failures} of {len(pending)} task(s) could not be finished (see above)")


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@connection_options
@handle_errors
def status(
    task_id: str, as_json: bool, api_key: str | None, base_url: str | None, debug: bool
) -> None:
    """Show a task's status once, without waiting (and update its history row)."""
    from fluxclaw import jobs
    from fluxclaw.history import History

    history = History()
    ref, entry = resolve_ref(history, task_id)
    if entry is not None:
        jobs.refuse_gone(entry, history)  # before asking for a key it would not need
    url = base_url or (entry.base_url if entry and not entry.sandbox else None)
    with connect(api_key, url, sandbox=False, debug=debug) as client:
        found = jobs.look(client, ref, history)
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
@click.option(
    "--sandbox", is_flag=True, help="Ask a sandbox started for this command (no key, no cost)."
)
@connection_options
@handle_errors
def balance(
    as_json: bool, sandbox: bool, api_key: str | None, base_url: str | None, debug: bool
) -> None:
    """Show the account's balance."""
    with connect(api_key, base_url, sandbox=sandbox, debug=debug) as client:
        found = client.balance()
    if as_json:
        click.echo(json.dumps(found))
        return
    cents = found.get("balance_cents")
    click.echo("unknown" if not isinstance(cents, int) else f"${cents / 100:.2f}")
