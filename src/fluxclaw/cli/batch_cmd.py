"""`fluxclaw batch FILE -o DIR` and `fluxclaw gallery`: the batch runner's command-line doors.

Everything a batch promises (journal, keys, budget, resuming, manifest, gallery) is in
`fluxclaw.batch`; this module reads options, shows progress on stderr (rich, imported only
here) and prints the summary.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from fluxclaw import contract
from fluxclaw.cli.common import FORMATS, confirm_spend, connection_options, fail, handle_errors

if TYPE_CHECKING:
    from fluxclaw.batch import BadRow, BatchResult, Defaults, RowFile
    from fluxclaw.batch import Plan as BatchPlan
    from fluxclaw.batch import Progress as BatchProgress
    from fluxclaw.history import History
    from fluxclaw.polling import PollPolicy


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, metavar="DIR", help="Output folder.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=8,
    show_default=True,
    help="Tasks in flight at once.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Submit nothing that, with what is in flight, would pass this total.",
)
@click.option("-m", "--model", help="Default model for rows without one (pro, flex, max).")
@click.option("-a", "--aspect-ratio", help="Default aspect ratio for rows without one.")
@click.option("-r", "--resolution", help="Default resolution for rows without one (1k, 2k).")
@click.option(
    "--format",
    "image_format",
    type=click.Choice(FORMATS, case_sensitive=False),
    help="Default format.",
)
@click.option(
    "--no-safety-checker",
    is_flag=True,
    help="Turn the safety checker off for rows whose model has one (Pro, Flex).",
)
@click.option(
    "--callback-url",
    metavar="URL",
    help="Where RunAPI reaches this machine; a receiver listens on 127.0.0.1 at the "
    "URL's port and tasks wake on callbacks instead of polling.",
)
@click.option("--retry-failed", is_flag=True, help="Run rows whose task failed before again.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds any one row may take.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (done, new, changed, unfinished, failed, bad rows and the price) and "
    "send nothing.",
)
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Re-make rows that changed since their image was paid for (the old image stays), and "
    "do not ask at a terminal before a run above `fluxclaw config --confirm-above`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Run against a sandbox started for this command (no key, no cost).",
)
@connection_options
@handle_errors
def command(
    file: Path,
    out: str,
    concurrency: int,
    budget: float | None,
    model: str | None,
    aspect_ratio: str | None,
    resolution: str | None,
    image_format: Any,
    no_safety_checker: bool,
    callback_url: str | None,
    retry_failed: bool,
    timeout: float,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    sandbox: bool,
    api_key: str | None,
    base_url: str | None,
    debug: bool,
) -> None:
    """Run one image request per row of FILE (JSON Lines or CSV); run it again to resume.

    Rows have a prompt and may set model, aspect_ratio, resolution, images (URLs or files,
    | separated in CSV), name and format. Bad rows are reported by line and skipped. A row is
    what it asks for, not its line: a re-run skips done rows and finishes started ones, and
    rows changed since they were paid for are re-made only with --yes. Exit 0 when every row
    is done, 4 when no row could run (all bad, or the file refused) or changed rows need --yes,
    8 when a budget stopped some, 1 otherwise.
    """
    import anyio

    from fluxclaw.batch import Defaults, RowFile
    from fluxclaw.cli.common import endpoint

    plan = Plan(
        file=file,
        out=out,
        defaults=Defaults(
            model,
            aspect_ratio,
            resolution,
            image_format,
            safety_checker=False if no_safety_checker else None,
        ),
        concurrency=concurrency,
        budget=budget,
        callback_url=callback_url,
        retry_failed=retry_failed,
        timeout=timeout,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
        sandbox=sandbox,
    )
    seen: list[str] = []  # the batch's id once planned, for what Ctrl-C says
    with endpoint(api_key, base_url, sandbox=sandbox, debug=debug) as (key, url, poll):
        try:
            result = anyio.run(lambda: _run(key, url, poll, RowFile(file), plan, seen))
        except KeyboardInterrupt:
            _interrupted(seen[-1] if seen else None, sandbox)
    if result is None:
        return  # a dry run: the plan is printed
    counts = result.counts
    summary = {
        "rows": result.total,
        **counts,
        "bad_rows": [{"line": b.line, "error": b.error} for b in result.bad],
        "bad_count": result.bad_count,
        "spent_usd": round(result.spent_usd, 2),
        "charged_this_run_usd": round(result.charged_now_usd, 2),
        "running_usd": round(result.running_usd, 2),
        "manifest": str(result.manifest),
        "gallery": str(result.manifest.with_name("index.html")),
    }
    _show_bad(result.bad, result.bad_count)
    running = (
        f"; up to ${result.running_usd:.2f} more for tasks still running (run again to finish)"
        if result.running_usd
        else ""
    )
    click.echo(
        f"batch: {counts.get('done', 0)} done, {counts.get('failed', 0) + counts.get('error', 0)} "
        f"failed, {counts.get('over_budget', 0)} over budget, {counts.get('invalid', 0)} bad rows; "
        f"${result.charged_now_usd:.2f} charged in this run, ${result.spent_usd:.2f} for this "
        f"batch in all{running}\nmanifest: {summary['manifest']}\n"
        f"gallery: {summary['gallery']}",
        err=True,
    )
    if as_json:
        click.echo(json.dumps(summary))
    if result.plan is not None and not result.plan.runnable:  # every row refused
        sys.exit(contract.EXIT_INVALID)
    if counts.get("over_budget"):  # a cap stopped rows: the one thing to raise or wait out
        sys.exit(contract.EXIT_BUDGET)
    if counts.get("failed") or counts.get("error") or counts.get("invalid"):
        sys.exit(contract.EXIT_OTHER)


@dataclass(frozen=True)
class Plan:
    file: Path
    out: str
    defaults: Defaults
    concurrency: int
    budget: float | None
    callback_url: str | None
    retry_failed: bool
    timeout: float
    dry_run: bool
    yes: bool
    as_json: bool
    sandbox: bool = False


def _show_bad(bad: list[BadRow], count: int) -> None:
    for item in bad:
        click.echo(f"line {item.line}: {item.error}", err=True)
    if count > len(bad):
        click.echo(f"... and {count - len(bad)} more bad rows (the manifest lists each)", err=True)


def _approve(found: BatchPlan, plan: Plan, history: History) -> None:
    """Say what the run will do; stop before paying for re-made rows unless the user agrees."""
    from fluxclaw.batch import BadRow

    click.echo(found.describe(), err=True)
    if plan.dry_run:
        if plan.as_json:
            for piece in found.to_json(history):
                sys.stdout.write(piece)
            sys.stdout.write("\n")
        else:
            for item in found.each(history):
                what = (
                    f"bad  {item.error}"
                    if isinstance(item, BadRow)
                    else f"{item.kind}  {item.row.prompt}"
                )
                click.echo(
                    f"line {item.line if isinstance(item, BadRow) else item.row.line}: {what}"
                )
        return
    cents = found.estimate_cents
    if not plan.sandbox:  # the one confirmation rule (a one-run sandbox costs nothing)
        usd = None if cents is None else cents / 100
        confirm_spend(usd, f"This batch ({found.runnable} rows to run)", yes=plan.yes)
    changed = found.counts.get("changed", 0)
    if not changed or plan.yes:
        return
    question = f"{changed} row(s) changed since their image was paid for; make them again?"
    if sys.stdin.isatty() and sys.stderr.isatty() and click.confirm(question, err=True):
        return
    fail(
        f"{changed} row(s) ask for something new where an image was already paid for; "
        "re-run with --yes to make them again (the paid images stay), or --dry-run to see "
        "which.",
        contract.EXIT_INVALID,
    )


def _interrupted(batch: str | None, sandbox: bool) -> NoReturn:
    """Ctrl-C: how many tasks were running (paid for, and still running on RunAPI), as the
    ledger has them, and that the same command finishes them without paying twice."""
    from fluxclaw.history import History

    if sandbox:
        line = "the one-run sandbox ends with this command (no cost); nothing carries over"
    elif batch is not None and (
        running := sum(1 for e in History().in_batch(batch) if e.unfinished)
    ):
        line = (
            f"{running} task(s) were in flight and keep running on RunAPI (they are charged); "
            "run the same command again to finish them and save their images, without paying "
            "twice"
        )
    else:
        line = "no task was in flight; run the same command again to go on where this stopped"
    click.echo(f"\ninterrupted: {line}", err=True)
    sys.exit(130)


async def _run(
    key: str, url: str, poll: PollPolicy, rows: RowFile, plan: Plan, seen: list[str]
) -> BatchResult | None:
    from fluxclaw import jobs
    from fluxclaw.batch import plan_batch, run_batch
    from fluxclaw.batch.rows import BadFile
    from fluxclaw.callbacks import CallbackServer
    from fluxclaw.cli.progress import Progress
    from fluxclaw.client import AsyncClient
    from fluxclaw.history import History
    from fluxclaw.polling import PollPolicy

    history = History()
    out = Path(plan.out).expanduser().resolve()
    async with AsyncClient(api_key=key, base_url=url, poll=poll) as planner:
        await jobs.arefresh_prices(planner, history)  # the plan's price, as the API states it
        try:
            found = plan_batch(
                planner,
                rows,
                out,
                history,
                defaults=plan.defaults,
                sources_from=plan.file.parent,
                retry_failed=plan.retry_failed,
            )
        except BadFile as exc:
            fail(f"{plan.file}: {exc}.", contract.EXIT_INVALID)
        except (OSError, UnicodeDecodeError) as exc:
            fail(
                f"cannot read {plan.file} ({exc}); give a UTF-8 JSON Lines or CSV file.",
                contract.EXIT_INVALID,
            )
        if not found.runnable:
            if not found.bad_count:
                fail(
                    f"{plan.file} has no rows; each line needs at least a prompt.",
                    contract.EXIT_INVALID,
                )
            _show_bad(found.bad, found.bad_count)
            fail(
                f"no row of {plan.file} can run ({found.bad_count} bad rows, above).",
                contract.EXIT_INVALID,
            )
    seen.append(found.batch)
    _approve(found, plan, history)
    if plan.dry_run:
        return None
    server = None
    if plan.callback_url:
        port = urllib.parse.urlsplit(plan.callback_url).port or 0
        server = CallbackServer(port=port, public_url=plan.callback_url)
        server.start()
    else:
        # Status requests are free and a batch is paid in wall time: poll eagerly (about twice
        # the requests of the default, half the lag; bench/clients.py).
        poll = dataclasses.replace(poll, price=PollPolicy.preset("eager").price)
    try:
        async with AsyncClient(api_key=key, base_url=url, poll=poll) as client:
            bar = Progress(every=1.0)  # off a terminal: a line a second at most
            bar.begin("batch")
            said = 0  # failures already printed, each as its own line

            def show(p: BatchProgress) -> None:
                nonlocal said
                for line, message in p.failures[said:]:
                    bar.note(f"line {line} failed: {message}")
                said = len(p.failures)
                eta = p.eta(plan.concurrency)
                left = "" if eta is None else f", ~{eta:.0f}s left"
                finished = p.done + p.failed + p.skipped
                bar.status(
                    f"{finished}/{p.total}: {p.done} done, {p.failed} failed, "
                    f"{p.in_flight} in flight, ${p.spent_usd:.2f} spent{left}"
                )

            try:
                return await run_batch(
                    client,
                    rows,
                    plan.out,
                    defaults=plan.defaults,
                    sources_from=plan.file.parent,
                    concurrency=plan.concurrency,
                    budget_usd=plan.budget,
                    retry_failed=plan.retry_failed,
                    remake=True,
                    history=history,
                    plan=found,
                    receiver=server,
                    callback_url=server.callback_url if server else None,
                    timeout=plan.timeout,
                    on_progress=show,
                )
            finally:
                bar.end()
    finally:
        if server is not None:
            server.stop()


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--from-history", is_flag=True, help="Every saved image in the local history.")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="With --from-history: how many of the newest tasks to show.",
)
@handle_errors
def gallery(folder: Path, from_history: bool, limit: int) -> None:
    """Write FOLDER/index.html from its batch manifest (or, --from-history, from the history)."""
    from fluxclaw.batch import write_gallery

    folder.mkdir(parents=True, exist_ok=True)
    if from_history:
        from fluxclaw.history import History

        rows: Iterable[dict[str, Any]] = [
            {
                "status": entry.status,
                "path": entry.paths[0] if entry.paths else None,
                "prompt": entry.prompt,
                "model": entry.model,
                "aspect_ratio": entry.params.get("aspect_ratio"),
                "resolution": entry.params.get("resolution"),
                "cost_usd": entry.cost,
                "error": entry.error,
            }
            for entry in History().search(limit=limit)
        ]
    else:
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            fail(
                f"{manifest} does not exist; run `fluxclaw batch` into {folder} first, "
                "or pass --from-history.",
                contract.EXIT_INVALID,
            )
        rows = _manifest(manifest)
    click.echo(
        str(write_gallery(folder.resolve(), rows, "fluxclaw history" if from_history else ""))
    )


def _manifest(path: Path) -> Iterator[dict[str, Any]]:
    """A manifest's lines, read as the gallery is written (a batch may have many)."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError:
                fail(
                    f"{path} line {number} is not JSON; run `fluxclaw batch` into the folder "
                    "again to write it anew.",
                    contract.EXIT_INVALID,
                )
            if isinstance(row, dict):
                yield row
