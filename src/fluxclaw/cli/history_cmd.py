"""`fluxclaw history`: every task this machine created, newest first, searchable."""

from __future__ import annotations

import json
import time

import click

from fluxclaw.cli.common import handle_errors


@click.command()
@click.argument("text", required=False)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@handle_errors
def command(text: str | None, limit: int, as_json: bool) -> None:
    """List past tasks; TEXT searches prompts, task ids, models and statuses."""
    from fluxclaw.history import History

    entries = History().search(text, limit=limit)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.as_json()))
        return
    if not entries:
        click.echo("no tasks yet" if not text else f"no tasks match {text!r}", err=True)
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created_at))
        cost = "" if entry.cost is None else f" ${entry.cost:.2f}"
        prompt = entry.prompt if len(entry.prompt) <= 60 else entry.prompt[:57] + "..."
        click.echo(f"{when}  {entry.task_id or '-':36}  {entry.status:<11}{cost}  {prompt}")
        for path in entry.paths:
            click.echo(f"    {path}")
