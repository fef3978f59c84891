"""Surprises the CLI refuses before anything is sent: a prompt that names a file, `--async` with
a one-run sandbox, and an `-o` name whose suffix `--format` contradicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxclaw import contract

from .conftest import Run, one_line_error


def test_a_prompt_that_names_a_file_is_refused_with_a_hint(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    (tmp_path / "work" / "prompt.txt").write_text("a red lamp on a desk\n")
    done = run("generate", "@prompt.txt")
    assert done.returncode == contract.EXIT_INVALID
    assert "fluxclaw generate - < prompt.txt" in one_line_error(done.stderr)
    piped = run("generate", "-", "-o", "out/", input="a red lamp on a desk\n")
    assert piped.returncode == 0, piped.stderr
    assert [t["request"]["prompt"] for t in sandbox.tasks()] == ["a red lamp on a desk"]


def test_async_with_a_one_run_sandbox_is_refused(run: Run) -> None:
    done = run("generate", "a lamp", "--sandbox", "--async")
    assert done.returncode == contract.EXIT_INVALID
    assert "--async cannot be used with --sandbox" in one_line_error(done.stderr)


def test_an_output_name_that_contradicts_format_is_refused(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    done = run("generate", "a lamp", "--format", "jpeg", "-o", "x.png")
    assert done.returncode == contract.EXIT_INVALID
    assert "name it x.jpg" in one_line_error(done.stderr)
    assert not [r for r in sandbox.requests() if r["method"] == "POST"]
    assert not (tmp_path / "work" / "x.jpg").exists()


def test_choices_are_taken_as_people_spell_them(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    """`-r 2K`, `-m Flux-2-Pro` (the plugin's name) and `-m PRO` are what they look like."""
    for args in (["-r", "2K"], ["-m", "Flux-2-Pro"], ["-m", "PRO", "-r", "1K"]):
        done = run("generate", "a lamp on a desk", "-o", "out/", *args)
        assert done.returncode == 0, (args, done.stderr)
    sent = [(t["request"]["model"], t["request"]["output_resolution"]) for t in sandbox.tasks()]
    assert sent == [
        ("flux-2-pro-text-to-image", "2k"),
        ("flux-2-pro-text-to-image", "1k"),
        ("flux-2-pro-text-to-image", "1k"),
    ]
