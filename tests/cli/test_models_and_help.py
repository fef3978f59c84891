"""`fluxclaw models`, bare groups printing their help, and every command's `--help`."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import click
import pytest

from fluxclaw import contract
from fluxclaw.cli.main import COMMANDS

from .conftest import Run, one_line_error

# Options that had no help text when this test was written (in files other than main.py,
# models_cmd.py and openclaw_cmd.py); a new option without help still fails.


def _walk(path: str, command: click.Command) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _walk(f"{path} {name}", sub)


def _commands() -> list[tuple[str, click.Command]]:
    """Every command of COMMANDS and every subcommand of a group, by its path."""
    found: list[tuple[str, click.Command]] = []
    for name, (module, attribute, _) in sorted(COMMANDS.items()):
        found.extend(_walk(name, getattr(importlib.import_module(module), attribute)))
    return found


def _without_help(command: click.Command) -> set[str]:
    return {
        max(param.opts, key=len)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    }


COMMAND_PATHS = [path for path, _ in _commands()]


# -- bare groups ---------------------------------------------------------------------------------


def test_bare_fluxclaw_prints_help_and_exits_0(run: Run) -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "error" not in done.stderr
    assert "Commands:" in done.stdout
    for name in COMMANDS:
        assert f"  {name} " in done.stdout


def test_bare_openclaw_prints_its_help_and_exits_0(run: Run) -> None:
    done = run("openclaw")
    assert done.returncode == 0, done.stderr
    assert "Usage: fluxclaw openclaw" in done.stdout
    assert "install" in done.stdout and "error" not in done.stderr


@pytest.mark.parametrize("args", [("no-such-command",), ("openclaw", "no-such-command")])
def test_other_usage_errors_still_exit_4(run: Run, args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == contract.EXIT_INVALID
    assert done.stderr.startswith("error: ") and not done.stdout


# -- models --------------------------------------------------------------------------------------


def _models_json(run: Run, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run("models", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_models_json_states_the_contract(run: Run) -> None:
    data = _models_json(run)
    assert data["prices_from"] == "contract"
    families = {family["family"]: family for family in data["families"]}
    assert tuple(families) == contract.FAMILIES
    for name, family in families.items():
        rules = contract.FAMILY_RULES[name]
        assert family["resolutions"] == list(contract.resolutions_for(name))
        assert family["aspect_ratio_required"] == rules.ratio_required
        assert family["output_count"] == (contract.OUTPUT_COUNT if rules.output_count else None)
        models = {model["action"]: model for model in family["models"]}
        assert tuple(models) == contract.ACTIONS
        for action, model in models.items():
            assert model["id"] == contract.model_for(name, action).id
            assert model["aspect_ratios"] == list(contract.ratios_for(action, name))
            sources = model["source_images"]
            if action == "remix_image":
                assert sources["max"] == rules.max_sources
                assert sources["text"] == contract.source_span(name)
            else:
                assert sources is None
            assert set(model["prices"]) == set(contract.resolutions_for(name))
            for resolution, price in model["prices"].items():
                assert price["cents"] == contract.price_cents(name, resolution)
                assert price["basis"] == ("unknown" if price["cents"] is None else "contract")


def test_models_remix_source_limits(run: Run) -> None:
    """Pro and Flex take 1 to 8 source URLs, Max exactly 1, as the contract says."""
    families = {family["family"]: family for family in _models_json(run)["families"]}
    for name in contract.FAMILIES:
        remix = next(m for m in families[name]["models"] if m["action"] == "remix_image")
        expected = {"min": 1, "max": contract.FAMILY_RULES[name].max_sources}
        assert {k: remix["source_images"][k] for k in expected} == expected


def test_models_table_has_a_header_and_a_row_per_model(run: Run) -> None:
    done = run("models")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[0] == "model"
    for resolution in contract.RESOLUTIONS:
        assert resolution in lines[0].split()
    for model_id in contract.MODELS:
        row = next(line for line in lines if line.startswith(model_id + " "))
        for ratio in contract.ASPECT_RATIOS:
            assert ratio in row.split()
    prices = next(line for line in lines if line.startswith("prices:"))
    assert "contract" in prices


def test_models_live_shows_the_sandboxs_prices(run: Run, fluxclaw_sandbox: Any) -> None:
    fluxclaw_sandbox.configure(prices={"pro": {"1k": 11, "2k": 13}, "flex": 17, "max": 19})
    env = {"RUNAPI_BASE_URL": fluxclaw_sandbox.base_url}  # no key: schedules need none
    assert _models_json(run, env=env)["prices_from"] == "contract"  # only --live asks
    data = _models_json(run, "--live", env=env)
    assert data["prices_from"] == fluxclaw_sandbox.base_url
    cents = {
        (family["family"], res): (price["cents"], price["basis"])
        for family in data["families"]
        for model in family["models"]
        for res, price in model["prices"].items()
    }
    assert cents[("pro", "1k")] == (11, "schedule")
    assert cents[("pro", "2k")] == (13, "schedule")
    assert cents[("flex", "2k")] == (17, "schedule")
    assert cents[("max", "1k")] == (19, "schedule")

    table = run("models", "--live", "--base-url", fluxclaw_sandbox.base_url)
    assert table.returncode == 0, table.stderr
    assert "$0.11" in table.stdout and "$0.13" in table.stdout and "$0.19" in table.stdout
    assert fluxclaw_sandbox.base_url in table.stdout
    assert "unknown" not in table.stdout


def test_models_live_with_a_bad_base_url_is_one_error_line(run: Run) -> None:
    done = run("models", "--live", "--base-url", "ftp://example.com")
    assert done.returncode == contract.EXIT_INVALID
    assert "base_url" in one_line_error(done.stderr) and not done.stdout


# -- every command's help ------------------------------------------------------------------------


@pytest.mark.parametrize("path", COMMAND_PATHS)
def test_help_exits_0(run: Run, path: str) -> None:
    done = run(*path.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: fluxclaw {path}")


def test_no_option_lacks_help() -> None:
    missing = sorted((path, o) for path, command in _commands() for o in _without_help(command))
    assert missing == []


def test_shell_completion_as_the_readme_sets_it_up(run: Run) -> None:
    """The README's line makes a completion script; it completes commands and choices."""
    script = run(env={"_FLUXCLAW_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_fluxclaw_completion()" in script.stdout
    for words, cword, expected in [
        ("fluxclaw gen", "1", ["plain,generate"]),
        ("fluxclaw generate --format ", "3", ["plain,png", "plain,jpeg", "plain,webp"]),
    ]:
        asked = {"_FLUXCLAW_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
        done = run(env=asked)
        assert done.returncode == 0 and done.stdout.split() == expected, done.stdout
