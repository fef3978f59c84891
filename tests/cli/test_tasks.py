"""generate, remix, status, wait and balance as real subprocesses against a real sandbox."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import contract

from .conftest import FLUXCLAW, KEY, Run, history_rows, interruptible, one_line_error


def test_generate_json_saves_png_and_history(run: Run, api: dict[str, str], sandbox: Any) -> None:
    done = run("generate", "a red bicycle at dawn", "-a", "16:9", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "completed" and data["cost_usd"] == 0.05
    assert data["model"] == "flux-2-pro-text-to-image"
    [path] = data["paths"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == contract.image_size("16:9", "1k")
    assert "red-bicycle" in Path(path).name and data["task_id"][:8] in Path(path).name
    assert f"task {data['task_id']} submitted" in done.stderr
    [row] = history_rows(api)
    assert row["task_id"] == data["task_id"] and row["status"] == "completed"
    assert json.loads(row["paths"]) == [path]
    assert len(sandbox.ledger()["charges"]) == 1


def test_plain_output_is_the_saved_path(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a lighthouse in fog", "-o", "pics/")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert Path(line).is_file() and Path(line).parent.name == "pics"


def test_format_jpeg_to_named_file(run: Run, api: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "shot.jpg"
    done = run(
        "generate",
        "a teapot on a table",
        "-m",
        "flex",
        "-r",
        "2k",
        "--format",
        "jpeg",
        "-o",
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    with Image.open(target) as image:
        assert image.format == "JPEG"
        assert image.size == contract.image_size("1:1", "2k")


def test_prompt_from_stdin(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "-", "--json", input="a cactus in a pot\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prompt"] == "a cactus in a pot"


def test_async_then_status_then_wait(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a paper boat [sandbox:seconds=0.3]", "--async", "--json")
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["task_id"]
    status = run("status", task_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["task_id"] == task_id
    waited = run("wait", task_id, "--json", "-o", "waited/")
    assert waited.returncode == 0, waited.stderr
    data = json.loads(waited.stdout)
    assert data["status"] == "completed" and Path(data["paths"][0]).is_file()
    [row] = history_rows(api)
    assert row["status"] == "completed" and json.loads(row["paths"]) == data["paths"]


def test_remix_local_file(run: Run, api: dict[str, str], tmp_path: Path, sandbox: Any) -> None:
    source = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(source)
    done = run("remix", "make it blue", "-i", str(source), "-a", "auto", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["action"] == "remix_image" and Path(data["paths"][0]).is_file()
    puts = [r for r in sandbox.requests() if r["method"] == "PUT"]
    assert puts and not any(r["authorization"] for r in puts)


def test_sandbox_flag_needs_no_key(run: Run, tmp_path: Path) -> None:
    done = run(
        "generate",
        "--sandbox",
        "a kite over a beach",
        "--json",
        env={"FLUXCLAW_SANDBOX_SPEED": "100"},
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["sandbox"] is True
    with Image.open(data["paths"][0]) as image:
        assert image.format == "PNG"


def test_balance(run: Run, api: dict[str, str]) -> None:
    done = run("balance", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["balance_cents"] == 10000


# -- exit codes: one line, no traceback, and bad input costs nothing ------------------------


def test_no_key_says_how_to_set_one(run: Run) -> None:
    done = run("generate", "a cat")
    assert done.returncode == contract.EXIT_AUTH
    line = one_line_error(done.stderr)
    assert "RUNAPI_API_KEY" in line and "--sandbox" in line


def test_wrong_key_exits_2(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a cat", "--api-key", "sk-wrong")
    assert done.returncode == contract.EXIT_AUTH
    one_line_error(done.stderr)


def test_insufficient_credits_exits_3(
    run: Run, cli_env: dict[str, str], fluxclaw_sandbox_factory: Any
) -> None:
    poor = fluxclaw_sandbox_factory(api_key=KEY, balance_usd=0.01)
    done = run("generate", "a cat", env={"RUNAPI_API_KEY": KEY, "RUNAPI_BASE_URL": poor.base_url})
    assert done.returncode == contract.EXIT_CREDITS
    one_line_error(done.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "a cat", "-a", "5:4"],
        ["generate", "hi"],
        ["generate", "a cat", "-m", "max", "-r", "2k"],
        ["generate", "a cat", "-m", "ultra"],
        ["remix", "a cat", "-i", "/no/such/file.png"],
        ["generate", "a cat", "--callback-url", "ftp://example.com/x"],
    ],
)
def test_bad_input_exits_4_and_sends_nothing(
    run: Run, api: dict[str, str], sandbox: Any, args: list[str]
) -> None:
    done = run(*args)
    assert done.returncode == contract.EXIT_INVALID, done.stderr
    one_line_error(done.stderr)
    assert sandbox.requests() == []


@pytest.mark.parametrize("value", ["fast", "0", "-1"])
def test_a_bad_time_scale_is_a_one_line_error(
    run: Run, api: dict[str, str], sandbox: Any, value: str
) -> None:
    done = run("generate", "a cat", env={"FLUXCLAW_TIME_SCALE": value})
    assert done.returncode == contract.EXIT_INVALID, done.stderr
    assert "FLUXCLAW_TIME_SCALE" in one_line_error(done.stderr)
    assert sandbox.requests() == []


def test_timeout_exits_5_with_resume_command(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a slow cat [sandbox:seconds=30]", "--timeout", "1")
    assert done.returncode == contract.EXIT_TIMEOUT
    line = one_line_error(done.stderr)
    assert "fluxclaw wait" in line


def test_rate_limited_exits_6(run: Run, api: dict[str, str], sandbox: Any) -> None:
    sandbox.configure(rate_limit=0.001)
    run("balance")  # spends the one token
    done = run("balance")
    assert done.returncode == contract.EXIT_RATE_LIMITED, done.stderr
    one_line_error(done.stderr)


def test_failed_task_exits_7_and_is_recorded(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a cat [sandbox:fail]")
    assert done.returncode == contract.EXIT_TASK_FAILED
    assert "Content policy violation" in one_line_error(done.stderr)
    [row] = history_rows(api)
    assert row["status"] == "failed" and "Content policy violation" in row["error"]


def test_interrupted_task_is_recorded_and_wait_saves_it(
    api: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [FLUXCLAW, "generate", "a patient owl [sandbox:seconds=4]"],  # outlasts a slow signal
        env=api,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    line = ""
    while "submitted" not in line:
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, "no task id on stderr"
    task_id = line.split()[1]
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert f"fluxclaw wait {task_id}" in rest and "Traceback" not in rest
    [row] = history_rows(api)
    assert row["status"] == "interrupted" and row["task_id"] == task_id
    waited = subprocess.run(
        [FLUXCLAW, "wait", task_id, "--json"],
        env=api,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert waited.returncode == 0, waited.stderr
    assert Path(json.loads(waited.stdout)["paths"][0]).is_file()
    [row] = history_rows(api)
    assert row["status"] == "completed"


def test_debug_never_shows_the_key(run: Run, api: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    Image.new("RGB", (32, 32), (0, 90, 200)).save(source)
    outputs = []
    first = run("generate", "a fox in snow", "--debug", "--json", "--api-key", KEY)
    task_id = json.loads(first.stdout)["task_id"]
    outputs.append(first)
    for args in (
        ["status", task_id, "--debug"],
        ["wait", task_id, "--debug"],
        ["balance", "--debug"],
        ["remix", "a fox in rain", "-i", str(source), "--debug", "--json"],
        ["price", "-m", "pro"],
        ["config", "--json"],
        ["history", "--json"],
        ["generate", "a fox [sandbox:fail]", "--debug"],
        ["generate", "a fox", "--debug", "--api-key", "sk-wrong"],
    ):
        outputs.append(run(*args))
    assert any("debug:" in done.stderr for done in outputs)  # the HTTP log was really on
    for done in outputs:
        assert KEY not in done.stdout and KEY not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_wait_on_a_task_made_elsewhere_records_it(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    import fluxclaw

    with fluxclaw.Client(api_key=KEY, base_url=sandbox.base_url) as client:
        task = client.submit_generate("a lighthouse at dusk [sandbox:seconds=0.2]", model="flex")
    done = run("wait", task.id, "--json")
    assert done.returncode == 0, done.stderr
    [row] = history_rows(api)
    assert row["task_id"] == task.id and row["status"] == "completed"
    assert row["action"] == "text_to_image"  # status answers carry no model or prompt
    assert json.loads(row["paths"]) == json.loads(done.stdout)["paths"]


def test_interrupted_count_says_what_runs_and_resume_finishes_each_once(
    api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [FLUXCLAW, "generate", "a patient owl [sandbox:seconds=4]", "-n", "2", "-o", "owl.png"],
        env=api,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    submitted: list[str] = []
    while len(submitted) < 2:
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, "no task ids on stderr"
        if "submitted" in line:
            submitted.append(line.split()[1])
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 130, rest
    assert "2 task(s) keep running" in rest and "`fluxclaw resume` finishes them" in rest
    assert all(task_id in rest for task_id in submitted) and "Traceback" not in rest
    finished = subprocess.run(
        [FLUXCLAW, "resume"], env=api, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    assert sorted(p.name for p in tmp_path.glob("owl-*.png")) == ["owl-1.png", "owl-2.png"]
    assert len(sandbox.tasks()) == 2  # nothing made twice
