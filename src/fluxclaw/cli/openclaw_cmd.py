"""`fluxclaw openclaw install`: put the skill where OpenClaw finds it, and show the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from fluxclaw import contract
from fluxclaw.cli.common import fail

SKILL = "fluxclaw"


def skill_source() -> Path:
    """The packaged skill (wheel), or the repository's copy (editable install)."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[1] / "_skill" / SKILL,
        here.parents[3] / "openclaw" / "skills" / SKILL,
    ):
        if (candidate / "SKILL.md").is_file():
            return candidate
    raise FileNotFoundError("the fluxclaw skill is missing from this installation")


def config_snippet() -> dict[str, object]:
    return {
        "skills": {"entries": {SKILL: {"enabled": True, "apiKey": "runapi_xxx"}}},
        "models": {
            "providers": {
                "runapi": {
                    "baseUrl": "https://runapi.ai/v1",
                    "apiKey": "runapi_xxx",
                    "api": "openai-completions",
                }
            }
        },
    }


@click.group()
def command() -> None:
    """Set fluxclaw up for OpenClaw agents."""


@command.command()
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Install into <workspace>/skills (this agent only).",
)
@click.option(
    "--global",
    "global_",
    is_flag=True,
    help="Install into ~/.openclaw/skills (every agent; honours OPENCLAW_STATE_DIR).",
)
def install(workspace: Path | None, global_: bool) -> None:
    """Copy the fluxclaw skill where OpenClaw loads skills, and print the openclaw.json snippet."""
    import os

    if workspace is not None and global_:
        fail("choose one of --workspace DIR or --global.", contract.EXIT_INVALID)
    if workspace is not None:
        root = workspace / "skills"
    else:
        state = os.environ.get("OPENCLAW_STATE_DIR")
        root = Path(state) / "skills" if state else Path.home() / ".openclaw" / "skills"
    target = root / SKILL
    source = skill_source()
    tmp = root / f".{SKILL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    click.echo(str(target))
    click.echo(
        f"installed the {SKILL} skill in {target}\n"
        "Add the RunAPI key to openclaw.json (the same key serves a RunAPI chat provider):\n"
        + json.dumps(config_snippet(), indent=2),
        err=True,
    )
