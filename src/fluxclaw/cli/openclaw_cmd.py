"""`fluxclaw openclaw install`: put the skill (and, with --plugin, the `runapi` image provider)
where OpenClaw finds them, and show the config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from fluxclaw import contract
from fluxclaw.cli.common import fail

SKILL = "fluxclaw"
PLUGIN = "runapi"


def skill_source() -> Path:
    """The packaged skill (wheel), or the repository's copy (editable install)."""
    return _packaged(("_skill", SKILL), ("openclaw", "skills", SKILL), "SKILL.md")


def plugin_source() -> Path:
    """The packaged OpenClaw provider plugin, or the repository's copy."""
    return _packaged(("_openclaw_plugin",), ("openclaw", "plugin"), "openclaw.plugin.json")


def _packaged(wheel: tuple[str, ...], repo: tuple[str, ...], marker: str) -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1].joinpath(*wheel), here.parents[3].joinpath(*repo)):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"{'/'.join(repo)} is missing from this installation")


def _replace_tree(source: Path, target: Path) -> None:
    """Copy beside the target, then swap: OpenClaw never sees half a folder."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


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
@click.option(
    "--plugin",
    is_flag=True,
    help="Also install the `runapi` image provider (image_generate, openclaw infer image).",
)
def install(workspace: Path | None, global_: bool, plugin: bool) -> None:
    """Copy the fluxclaw skill where OpenClaw loads skills, and print the openclaw.json snippet."""
    if workspace is not None and global_:
        fail("choose one of --workspace DIR or --global.", contract.EXIT_INVALID)
    state = _state_dir()
    root = workspace / "skills" if workspace is not None else state / "skills"
    root.mkdir(parents=True, exist_ok=True)
    target = root / SKILL
    _replace_tree(skill_source(), target)
    click.echo(str(target))
    click.echo(
        f"installed the {SKILL} skill in {target}\n"
        "Add the RunAPI key to openclaw.json (the same key serves a RunAPI chat provider):\n"
        + json.dumps(config_snippet(), indent=2),
        err=True,
    )
    click.echo(_which_fluxclaw(), err=True)
    if plugin:
        _install_plugin(state)


def _which_fluxclaw() -> str:
    """The fluxclaw the skill will run (OpenClaw finds it on PATH), or why it will say "Needs
    setup" and how to fix it."""
    here = Path(sys.executable).with_name("fluxclaw")
    found = shutil.which("fluxclaw")
    if found is None:
        return (
            "warning: fluxclaw is not on PATH, so OpenClaw will list the skill as 'Needs setup'; "
            "install it as a tool (pipx install 'fluxclaw[sandbox]', or uv tool install "
            f"'fluxclaw[sandbox]') or add {here.parent} to PATH."
        )
    if Path(found).resolve() != here.resolve():
        return f"the skill will run the fluxclaw on PATH: {found} (not this one, {here})"
    return f"the skill will run the fluxclaw on PATH: {found}"


def _state_dir() -> Path:
    state = os.environ.get("OPENCLAW_STATE_DIR")
    return Path(state) if state else Path.home() / ".openclaw"


def _install_plugin(state: Path) -> None:
    """A stable copy under the state folder, linked by `openclaw plugins install`, and this
    fluxclaw's path in the plugin's config (OpenClaw's PATH may not reach its virtualenv)."""
    target = state / "fluxclaw" / "plugin-runapi"
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace_tree(plugin_source(), target)
    fluxclaw = shutil.which("fluxclaw") or str(Path(sys.executable).with_name("fluxclaw"))
    openclaw = shutil.which("openclaw")
    steps = [
        ["plugins", "install", str(target), "--link", "--force", "--accept-capabilities"],
        ["config", "set", f"plugins.entries.{PLUGIN}.config.fluxclawPath", fluxclaw],
    ]
    if openclaw is None:
        click.echo(
            f"copied the {PLUGIN} provider plugin to {target}; openclaw is not on PATH, so run:\n"
            + "\n".join("  openclaw " + " ".join(step) for step in steps),
            err=True,
        )
        return
    for step in steps:
        done = subprocess.run(
            [openclaw, *step], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            fail(f"openclaw {step[0]} {step[1]} failed: {tail[0]}", contract.EXIT_OTHER)
    click.echo(str(target))
    click.echo(
        f"installed the {PLUGIN} image provider ({target}); select it in openclaw.json:\n"
        + json.dumps(plugin_snippet(), indent=2),
        err=True,
    )


def plugin_snippet() -> dict[str, object]:
    return {
        "agents": {"defaults": {"mediaModels": {"image": f"{PLUGIN}/flux-2-pro"}}},
        "plugins": {"entries": {PLUGIN: {"config": {"baseUrl": contract.DEFAULT_BASE_URL}}}},
    }
