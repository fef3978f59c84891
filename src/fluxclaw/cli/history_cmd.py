"""`fluxclaw history`: every task this machine created, newest first, searchable, as a table a
person can read; `history show ID` tells everything about one task and `history forget ID` hides
one from lists and from a bare `resume` (its money still counts: the ledger keeps every row).

Nothing here sends a request: it all comes from the history file.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click

from fluxclaw import contract
from fluxclaw.cli.common import handle_errors

if TYPE_CHECKING:
    from fluxclaw.history import Entry, History

# ctx.meta flag: this run of the group is a subcommand, so TEXT must not swallow its name.
_SUBCOMMAND = "fluxclaw.history.subcommand"
# The prompt column's width when stdout is no terminal (a pipe, a file, a test).
PROMPT_WIDTH = 60
MIN_PROMPT_WIDTH = 20


class HistoryGroup(click.Group):
    """`history [TEXT]` lists and `history show|forget ID` act on one row. A first word that
    names a subcommand is that subcommand, any other is the search text (`history -- show`
    searches for "show"): every form of the single command `history` was keeps working."""

    allow_interspersed_args = True  # `history TEXT --json`, as before

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            ctx.meta[_SUBCOMMAND] = True
            ctx.allow_interspersed_args = False  # `show ID --json`: the subcommand's option
            super().parse_args(ctx, args)
            ctx.params.setdefault("text", None)
            return ctx.args
        ctx.allow_extra_args = False  # `history red bicycle` unquoted: an error, as before
        return click.Command.parse_args(self, ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if ctx.meta.get(_SUBCOMMAND):
            return [param for param in params if param.name != "text"]
        return params

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] [TEXT]")
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix=" " * len("Usage: "))


@click.group(cls=HistoryGroup, name="history", invoke_without_command=True)
@click.argument("text", required=False)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many tasks (the newest).",
)
@click.option(
    "--pending",
    is_flag=True,
    help="Only tasks that may be paid and have no saved image yet (what a bare `fluxclaw "
    "resume` finishes).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@click.pass_context
@handle_errors
def command(ctx: click.Context, text: str | None, limit: int, pending: bool, as_json: bool) -> None:
    """List past tasks, newest first; TEXT searches prompts, task ids, models and statuses.

    ID, for `show` and `forget` (and `wait`, `status`, `resume`), is a task id or idempotency
    key, or a start of one that no other task shares (at least 6 characters, as in the id
    column). To search for the word show or forget: `fluxclaw history -- show`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from fluxclaw.history import UNFINISHED, History

    entries = History().search(text, limit=limit, statuses=UNFINISHED if pending else None)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.as_json()))
        return
    if not entries:
        what = "no pending tasks" if pending else "no tasks"
        click.echo(f"{what} yet" if not text else f"{what} match {text!r}", err=True)
        return
    for line in _table(entries):
        click.echo(line)


@command.command(short_help="Everything about one task.")
@click.argument("ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def show(ref: str, as_json: bool) -> None:
    """Everything the history knows about one task (its prompt, options, cost, files...)."""
    from fluxclaw.history import History

    entry = _resolved(History(), ref)
    _know_keys()
    data = _details(entry)
    if as_json:
        click.echo(_scrub(json.dumps(data)))
        return
    for label, value in _described(entry, data):
        lines = value.splitlines() or [""]
        click.echo(_scrub(f"{label:<16} {lines[0]}".rstrip()))
        for more in lines[1:]:
            click.echo(_scrub(f"{'':<16} {more}".rstrip()))


@command.command(short_help="Hide a task from lists (its cost still counts).")
@click.argument("ref", metavar="ID")
@handle_errors
def forget(ref: str) -> None:
    """Hide a task from `fluxclaw history` and a bare `fluxclaw resume` (its cost still counts)."""
    from fluxclaw.history import History

    history = History()
    entry = _resolved(history, ref)
    history.forget(entry.id)
    name = entry.task_id or f"with idempotency key {entry.idempotency_key}"
    was = "was already hidden" if entry.hidden else "is now hidden"
    click.echo(
        f"task {name} ({entry.status}) {was} from `fluxclaw history` and a bare "
        "`fluxclaw resume`; `fluxclaw history show` still shows it.",
        err=True,
    )
    if entry.sandbox:
        money = "it was a one-run sandbox task: it cost nothing and counts toward no cap."
    else:
        cents = history.counted_cents(entry.id)
        money = (
            f"its cost still counts: ${cents / 100:.2f} toward the daily budget"
            + (" and its batch's budget" if entry.batch else "")
            + "; hiding a task never changes what was spent."
        )
    click.echo(money, err=True)
    if entry.unfinished:
        handle = entry.task_id or entry.idempotency_key
        click.echo(
            f"it may still become a paid image: `fluxclaw resume {handle}` finishes it.", err=True
        )


def _resolved(history: History, ref: str) -> Entry:
    """The row ID names (a unique start of a task id or key is enough), or one error line."""
    from fluxclaw.errors import NotFoundError

    entry = history.resolve(ref)
    if entry is None:
        raise NotFoundError(
            f"task {ref.strip()} is not in the history; `fluxclaw status {ref.strip()}` asks "
            "the API about it."
        )
    return entry


# -- the table ---------------------------------------------------------------------------------


def _table(entries: list[Entry]) -> list[str]:
    """An aligned table with a header; the prompt, last, gets the room that is left."""
    rows = [["time", "id", "status", "model", "cost", "sandbox"]]
    for entry in entries:
        rows.append(
            [
                time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created_at)),
                (entry.task_id or entry.idempotency_key or "-")[:8],
                entry.status,
                family(entry.model),
                "-" if entry.cost is None else f"${entry.cost:.2f}",
                "yes" if entry.sandbox else "",
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    starts = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    room = _prompt_room(len(starts[0]) + 2)
    lines = [f"{starts[0]}  prompt"]
    for start, entry in zip(starts[1:], entries, strict=True):
        lines.append(f"{start}  {_clip(_prompt(entry), room)}".rstrip())
    return lines


def family(model: str) -> str:
    """pro, flex or max for a Flux 2 model id; any other model as it is."""
    known = contract.MODELS.get(model.strip().lower())
    if known is not None:
        return known.family
    return model or "-"


def _prompt(entry: Entry) -> str:
    """The prompt on one line (no control character reaches the terminal)."""
    if entry.private and not entry.prompt:
        return "(not kept: --no-history)"
    text = "".join(char if char.isprintable() else " " for char in entry.prompt)
    return " ".join(text.split()) or "-"


def _prompt_room(used: int) -> int:
    """A terminal's width less the other columns; a fixed width when stdout is no terminal."""
    if not sys.stdout.isatty():
        return PROMPT_WIDTH
    return max(MIN_PROMPT_WIDTH, shutil.get_terminal_size().columns - used)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# -- one task ----------------------------------------------------------------------------------


def _details(entry: Entry) -> dict[str, Any]:
    """What `history show --json` prints: the list's object and the rest of the row (never a
    key: the history holds none, and the base URL loses any user info or query it had)."""
    return {
        **entry.as_json(),
        "base_url": _safe_url(entry.base_url),
        "model_family": family(entry.model),
        "estimate_usd": None if entry.estimate_cents is None else entry.estimate_cents / 100,
        "batch": entry.batch,
        "identity": entry.identity,
        "job": entry.job,
        "private": entry.private,
        "hidden": entry.hidden,
        "unfinished": entry.unfinished,
    }


def _described(entry: Entry, data: dict[str, Any]) -> list[tuple[str, str]]:
    """`history show` as label and value lines, in the order a person asks about a task."""
    when = "%Y-%m-%d %H:%M:%S"
    cost = "unknown" if entry.cost is None else f"${entry.cost:.2f}"
    if data["estimate_usd"] is not None:
        cost += f" (estimate ${data['estimate_usd']:.2f})"
    status = entry.status
    if entry.hidden:
        status += " (hidden by `fluxclaw history forget`; its cost still counts)"
    elif entry.unfinished:
        handle = entry.task_id or entry.idempotency_key
        status += f" (unfinished: `fluxclaw resume {handle}`)"
    model = f"{entry.model} ({data['model_family']})" if entry.model else "-"
    options = ", ".join(
        f"{name}={value if isinstance(value, str) else json.dumps(value)}"
        for name, value in sorted(entry.params.items())
    )
    prompt = "\n".join(" ".join(line.split()) for line in entry.prompt.splitlines())
    lines = [
        ("task id", entry.task_id or "- (the create got no answer)"),
        ("idempotency key", entry.idempotency_key or "-"),
        ("status", status),
        ("action", entry.action),
        ("model", model),
        ("prompt", _prompt(entry) if entry.private and not entry.prompt else prompt or "-"),
        ("options", options or "-"),
        ("cost", cost),
        ("sandbox", "yes (a one-run sandbox: no cost)" if entry.sandbox else "no"),
        ("created", time.strftime(when, time.localtime(entry.created_at))),
        ("updated", time.strftime(when, time.localtime(entry.updated_at))),
        ("base url", data["base_url"] or "-"),
        ("batch", f"{entry.batch} (row {entry.identity})" if entry.batch else "-"),
        ("paths", "\n".join(entry.paths) or "-"),
        ("image urls", "\n".join(entry.urls) or "-"),
        ("error", entry.error or "-"),
    ]
    return lines


def _safe_url(url: str | None) -> str | None:
    """A base URL without user info, query or fragment: where a key could hide in one."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    netloc = parts.netloc.rpartition("@")[2]
    return _scrub(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _know_keys() -> None:
    """Teach the scrubber every key this machine is set up with, so none is printed even if
    some text of a row held one."""
    from fluxclaw.config import resolve_settings
    from fluxclaw.errors import FluxclawError

    with suppress(FluxclawError, OSError):
        resolve_settings()


def _scrub(text: str) -> str:
    from fluxclaw.redaction import scrub

    return scrub(text)
