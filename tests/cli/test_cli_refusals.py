"""Surprises the CLI refuses before anything is sent: a prompt that names a file (-f reads one),
`--async` with a one-run sandbox, and an `-o` name whose suffix `--format` contradicts."""

from __future__ import annotations

import os
import pty
from pathlib import Path
from typing import Any

from PIL import Image

from fluxclaw import contract
from tests.sandbox.conftest import wait_for

from .conftest import FLUXCLAW, Run, history_rows, one_line_error, read_until, recording_viewer


def test_a_prompt_that_names_a_file_is_refused_with_a_hint(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    (tmp_path / "work" / "prompt.txt").write_text("a red lamp on a desk\n")
    done = run("generate", "@prompt.txt")
    assert done.returncode == contract.EXIT_INVALID
    assert "use -f prompt.txt" in one_line_error(done.stderr)
    assert sandbox.requests() == []
    from_file = run("generate", "-f", "prompt.txt", "-o", "out/")
    assert from_file.returncode == 0, from_file.stderr
    piped = run("generate", "-", "-o", "out/", input="a blue lamp on a desk\n")
    assert piped.returncode == 0, piped.stderr
    prompts = [t["request"]["prompt"] for t in sandbox.tasks()]
    assert prompts == ["a red lamp on a desk", "a blue lamp on a desk"]


def test_a_prompt_file_is_read_whole_and_its_mistakes_are_refused(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "long.txt").write_text("a ceramic vase,\nnatural window light,\n35mm film grain\n")
    (work / "latin1.txt").write_bytes("caf\xe9 on a table".encode("latin-1"))
    for args, expected in [
        (("-f", "missing.txt"), "cannot read the prompt file missing.txt"),
        (("-f", "latin1.txt"), "it is not UTF-8 text"),
        (("-f", "long.txt", "a lamp"), "give the prompt once"),
        ((), "no prompt: give it as PROMPT"),
    ]:
        refused = run("generate", *args)
        assert refused.returncode == contract.EXIT_INVALID, (args, refused.stderr)
        assert expected in one_line_error(refused.stderr)
    assert sandbox.requests() == []  # nothing went out for any of them
    Image.new("RGB", (32, 32), "teal").save(work / "source.png")
    done = run("remix", "-f", "long.txt", "-i", "source.png", "--json")
    assert done.returncode == 0, done.stderr
    [task] = sandbox.tasks()
    assert task["request"]["prompt"] == "a ceramic vase,\nnatural window light,\n35mm film grain"


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


def test_open_hands_each_saved_image_to_the_system_viewer(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    """--open uses the system's opener (xdg-open here); a test's own on PATH records what it
    was given. With none at all, the image is still saved and one warning says so."""
    env, opened = recording_viewer(tmp_path)
    done = run("generate", "a lamp", "-o", "out/", "--open", env=env)
    assert done.returncode == 0, done.stderr
    [saved] = done.stdout.split()
    wait_for(lambda: opened.exists() and opened.read_text())  # started, not waited for
    assert opened.read_text().split() == [saved]

    (tmp_path / "bin" / "xdg-open").unlink()
    bare = run("generate", "a lamp", "-o", "out/", "--open", env={"PATH": str(tmp_path / "bin")})
    assert bare.returncode == 0, bare.stderr
    [again] = bare.stdout.split()
    assert Path(again).is_file()
    assert f"warning: could not open {again}" in bare.stderr


def test_count_makes_several_tasks_at_once_named_one_by_one(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    done = run("generate", "a lamp", "-n", "3", "-o", "x.png")
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    assert done.stdout.split() == [str(work / f"x-{i}.png") for i in (1, 2, 3)]
    assert all((work / f"x-{i}.png").is_file() for i in (1, 2, 3))
    tasks = sandbox.tasks()
    assert len(tasks) == 3 and len({t["idempotency_key"] for t in tasks}) == 3
    assert len(history_rows(api)) == 3  # each its own ledger row: caps and resume see each
    assert done.stderr.count("done: 3 image(s), $0.15") == 1
    assert done.stderr.count("submitted") == 3

    refused = run("generate", "a lamp", "-n", "0")
    assert refused.returncode == contract.EXIT_INVALID
    assert "Traceback" not in refused.stderr and len(sandbox.tasks()) == 3


def test_refusals_speak_the_options_people_typed(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    """Errors name -m, -a, -r and --no-safety-checker, not the API's body fields, and guess a
    mistyped model; nothing is sent for any of them."""
    for args, expected in [
        (("-m", "max", "--no-safety-checker"), "error: -m max does not take --no-safety-checker."),
        (("-m", "prp"), "error: -m prp is not a Flux 2 model (did you mean pro?); use one of:"),
        (("-m", "flux-2-maxx"), "(did you mean flux-2-max?)"),
        (("-a", "5:4"), "error: -a 5:4 is not allowed for -m pro; use one of: 1:1,"),
    ]:
        done = run("generate", "a lamp", *args)
        assert done.returncode == contract.EXIT_INVALID, (args, done.stderr)
        line = one_line_error(done.stderr)
        assert expected in line, line
        for field in ("model=", "aspect_ratio", "enable_safety_checker", "-text-to-image"):
            assert field not in line, line
    assert sandbox.requests() == []


def _at_a_terminal(
    args: list[str], env: dict[str, str], cwd: Path, answer: str | None
) -> tuple[int, bytes]:
    """`fluxclaw ARGS` on a terminal of its own; `answer` typed at its question, if it asks."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: fluxclaw at a terminal
        os.chdir(cwd)
        os.execve(FLUXCLAW, [FLUXCLAW, *args], env)
    seen = b""
    if answer is not None:
        seen = read_until(terminal, b"go ahead? [y/N]")
        os.write(terminal, f"{answer}\n".encode())
    seen += read_until(terminal, b"\x00")  # to the end
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), seen


def test_one_confirmation_rule_asks_only_at_a_terminal_and_above_the_threshold(
    api: dict[str, str], sandbox: Any, tmp_path: Path, run: Run
) -> None:
    """5 Flex 2k images ($1.20) pass the default $1: at a terminal it asks, and a no sends
    nothing; --yes, a higher threshold, a cheap run or no terminal (a script, an agent) ask
    nothing."""
    work = tmp_path / "work"
    dear = ["generate", "a lamp", "-m", "flex", "-r", "2k", "-n", "5", "-o", "out/"]
    code, seen = _at_a_terminal(dear, api, work, "n")
    assert code == contract.EXIT_OTHER, seen
    assert b"Making 5 images (flux-2-flex-text-to-image) is estimated at $1.20" in seen
    assert b"nothing was sent; pass --yes" in seen and sandbox.requests() == []
    code, seen = _at_a_terminal(dear, api, work, "y")
    assert code == 0, seen
    assert len(sandbox.tasks()) == 5
    for args in ([*dear, "--yes"], ["generate", "a lamp", "-o", "out/"]):
        code, seen = _at_a_terminal(args, api, work, None)
        assert code == 0 and b"go ahead?" not in seen, seen
    assert run("config", "--confirm-above", "5").returncode == 0
    code, seen = _at_a_terminal(dear, api, work, None)
    assert code == 0 and b"go ahead?" not in seen, seen
    assert run("config", "--confirm-above", "1").returncode == 0
    off = run(*dear)  # no terminal: nothing asks, the run goes ahead
    assert off.returncode == 0 and "go ahead?" not in off.stderr
    assert len(sandbox.tasks()) == 5 + 5 + 1 + 5 + 5
