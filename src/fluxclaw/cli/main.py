"""Entry point of `fluxclaw`. Commands are imported only when run, so `--help` stays fast."""

from __future__ import annotations

import gc
import importlib
import sys
import warnings

import click

from fluxclaw import contract
from fluxclaw._version import __version__

# command name -> (module, attribute, one-line help). The help text lives here so that
# `fluxclaw --help` can list commands without importing them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("fluxclaw.cli.tasks_cmd", "generate", "Generate an image from a prompt."),
    "remix": ("fluxclaw.cli.tasks_cmd", "remix", "Remix source images (URLs or files)."),
    "status": ("fluxclaw.cli.tasks_cmd", "status", "Show a task's status once."),
    "wait": ("fluxclaw.cli.tasks_cmd", "wait", "Resume a task by id and save its images."),
    "resume": (
        "fluxclaw.cli.tasks_cmd",
        "resume",
        "Finish unfinished tasks (or one, by task id or idempotency key).",
    ),
    "balance": ("fluxclaw.cli.tasks_cmd", "balance", "Show the account balance."),
    "batch": (
        "fluxclaw.cli.batch_cmd",
        "command",
        "Run one image per row of a JSON Lines or CSV file (resumable).",
    ),
    "gallery": ("fluxclaw.cli.batch_cmd", "gallery", "Write an index.html of saved images."),
    "config": (
        "fluxclaw.cli.config_cmd",
        "command",
        "Store the API key, base URL and daily budget.",
    ),
    "history": ("fluxclaw.cli.history_cmd", "command", "List and search past tasks."),
    "mcp": ("fluxclaw.cli.mcp_cmd", "command", "Serve fluxclaw as an MCP server over stdio."),
    "openclaw": ("fluxclaw.cli.openclaw_cmd", "command", "Install the OpenClaw skill."),
    "price": ("fluxclaw.cli.price_cmd", "command", "Show prices, or estimate a run."),
    "models": (
        "fluxclaw.cli.models_cmd",
        "command",
        "List the models: ids, ratios, resolutions, sources and prices.",
    ),
    "provenance": (
        "fluxclaw.cli.provenance_cmd",
        "command",
        "Say whether images carry Content Credentials and an AI label.",
    ),
    "sandbox": (
        "fluxclaw.cli.sandbox_cmd",
        "command",
        "Run a local RunAPI-compatible Flux 2 server (no key, no cost).",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        command: click.Command = getattr(module, spec[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="fluxclaw")
def cli() -> None:
    """Make Flux 2 images through RunAPI, or offline against the built-in sandbox."""


def main() -> None:
    """Run the CLI; usage errors exit 4 (the contract's "invalid"), not click's 2 ("auth")."""
    try:
        _main()
    finally:
        # Everything is closed by now; skipping the interpreter's last full collection saves
        # ~0.15 s per call (bench/cold_cli.py), which an agent pays on every image.
        gc.freeze()


def _warn(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """A warning is one line for a person ("warning: ..."), not a file and a code line."""
    click.echo(f"warning: {message}", err=True)


def _main() -> None:
    warnings.showwarning = _warn
    try:
        code = cli.main(prog_name="fluxclaw", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as error:
        if error.ctx is not None and _bare_group(error):
            click.echo(error.ctx.get_help())
            sys.exit(contract.EXIT_OK)
        where = f" (see: {error.ctx.command_path} --help)" if error.ctx else ""
        click.echo(f"error: {error.format_message()}{where}", err=True)
        sys.exit(contract.EXIT_INVALID)
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _bare_group(error: click.UsageError) -> bool:
    """A group run with no arguments (`fluxclaw`, `fluxclaw openclaw`): its help, not an error.
    click 8.2+ raises NoArgsIsHelpError for it; 8.1 printed the help and exited 0 itself."""
    kind = getattr(click.exceptions, "NoArgsIsHelpError", None)
    return kind is not None and isinstance(error, kind)


if __name__ == "__main__":  # pragma: no cover
    main()
