"""The README's own commands, run as written (against the sandbox), and the offline `--sandbox`
of the commands that lacked it."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from PIL import Image

from tests.sandbox.conftest import wait_for

from .conftest import Run, recording_viewer

README = Path(__file__).parents[2] / "README.md"


def _readme_line(starts: str) -> list[str]:
    [line] = [
        m for m in re.findall(r"^(fluxclaw .*)$", README.read_text(), re.M) if m.startswith(starts)
    ]
    return shlex.split(line.split("#")[0])[1:]


def _rows(work: Path, name: str) -> None:
    rows = [{"prompt": "a red lamp on a desk"}, {"prompt": "a blue teapot on a shelf"}]
    (work / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_readmes_batch_command_runs_as_written(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    args = _readme_line("fluxclaw batch products.jsonl")
    _rows(tmp_path / "work", "products.jsonl")
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert "2 done" in done.stderr
    tasks = sandbox.tasks()
    assert len(tasks) == 2 and all(t["request"]["output_resolution"] == "2k" for t in tasks)


def test_batch_and_balance_run_offline_with_sandbox(run: Run, tmp_path: Path) -> None:
    _rows(tmp_path / "work", "rows.jsonl")
    done = run("batch", "rows.jsonl", "-o", "out", "-r", "2k", "-a", "3:4", "--sandbox")
    assert done.returncode == 0, done.stderr
    assert "2 done" in done.stderr and "sandbox:" in done.stderr
    balance = run("balance", "--sandbox", "--json")
    assert balance.returncode == 0, balance.stderr
    assert json.loads(balance.stdout)["balance_cents"] > 0


def test_the_readmes_count_command_runs_as_written(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    args = _readme_line("fluxclaw generate -f prompt.txt")
    work = tmp_path / "work"
    (work / "prompt.txt").write_text("a stoneware mug on a walnut table, soft light\n")
    env, opened = recording_viewer(tmp_path)
    done = run(*args, env=env)
    assert done.returncode == 0, done.stderr
    saved = [str(work / f"mug-{i}.png") for i in (1, 2, 3, 4)]
    assert done.stdout.split() == saved
    # Each viewer is started, not waited for.
    wait_for(lambda: opened.exists() and len(opened.read_text().split()) >= 4)
    assert sorted(opened.read_text().split()) == saved
    prompts = {t["request"]["prompt"] for t in sandbox.tasks()}
    assert prompts == {"a stoneware mug on a walnut table, soft light"}


def _command_line_block() -> list[str]:
    """The README's `## Command line` example, line by line, comments dropped."""
    text = README.read_text().split("## Command line", 1)[1]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_command_line_block_runs_as_written(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    """Every line in order, against the test's sandbox (its key stands for the README's export),
    TASK_ID the id the `--async` line printed, and the files it names in place."""
    work = tmp_path / "work"
    Image.new("RGB", (64, 48), "orange").save(work / "photo.jpg")
    (work / "prompt.txt").write_text("a stoneware mug on a walnut table\n")
    env, _ = recording_viewer(tmp_path)
    task_id = ""
    lines = _command_line_block()
    assert lines[0].startswith("export RUNAPI_API_KEY=") and len(lines) >= 12
    for line in lines[1:]:
        args = shlex.split(line.replace("TASK_ID", task_id))
        assert args[0] == "fluxclaw", line
        done = run(*args[1:], env=env)
        assert done.returncode == 0, (line, done.stderr)
        assert "Traceback" not in done.stderr, line
        if "--async" in args:
            task_id = done.stdout.strip()
            assert re.fullmatch(r"[0-9a-f-]{36}", task_id), done.stdout
    assert (work / "pics").is_dir() and len(list(work.glob("mug-*.png"))) == 4
    posted = [r for r in sandbox.requests() if r["method"] == "POST" and "flux_2" in r["path"]]
    # generate, remix, -n 4, --async (the sandbox line: its own)
    assert len(posted) == 1 + 1 + 4 + 1, posted
