"""Paid work is never lost: each promise of the job engine, through the real CLI and sandbox.

Every test checks the sandbox's ledger (no second charge) and the files on disk.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import contract

from .conftest import FLUXCLAW, KEY, Run, history_rows, interruptible, one_line_error

CREATES = ("/api/v1/flux_2/text_to_image", "/api/v1/flux_2/remix_image")


@pytest.fixture
def work(run: Run, tmp_path: Path) -> Path:
    return tmp_path / "work"  # the `run` fixture's working folder


def charges(sandbox: Any) -> list[dict[str, Any]]:
    return list(sandbox.ledger()["charges"])


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg", ".webp"))


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FLUXCLAW, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )


def read_until(proc: subprocess.Popen[str], text: str, seconds: float = 20) -> str:
    """stderr lines up to the one containing `text` (a condition with a deadline, no sleep)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + seconds
    seen = ""
    line = ""
    while text not in line:
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, f"never saw {text!r}: {seen}"
        seen += line
    return seen


# -- the output target is checked before the create ---------------------------------------------


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("photo.png/out.png", "is a file, not a folder"),
        ("pic.gif", "not an image format"),
        ("/proc/fluxclaw-test/", "cannot write into /proc"),
        ("photo.png", "already exists; pass --force"),
    ],
)
def test_a_bad_output_target_costs_nothing_and_records_nothing(
    run: Run, api: dict[str, str], sandbox: Any, work: Path, output: str, says: str
) -> None:
    (work / "photo.png").write_bytes(b"the user's own file")
    done = run("generate", "a red kite", "-o", output)
    assert done.returncode == contract.EXIT_INVALID, done.stderr
    assert says in one_line_error(done.stderr)
    assert sandbox.requests() == [] and charges(sandbox) == []
    assert history_rows(api) == []
    assert (work / "photo.png").read_bytes() == b"the user's own file"
    assert not (work / "pic.gif").exists()


def test_a_remix_never_overwrites_its_own_source(
    run: Run, api: dict[str, str], sandbox: Any, work: Path
) -> None:
    source = work / "photo.png"
    Image.new("RGB", (40, 30), (10, 120, 40)).save(source)
    before = source.read_bytes()
    done = run("remix", "make it autumn", "-i", "photo.png", "-o", "photo.png")
    assert done.returncode == contract.EXIT_INVALID
    assert "--force" in one_line_error(done.stderr)
    assert source.read_bytes() == before and sandbox.requests() == []


def test_force_overwrites_the_named_file(run: Run, api: dict[str, str], work: Path) -> None:
    (work / "cover.png").write_bytes(b"old")
    done = run("generate", "a book cover with a fox", "-o", "cover.png", "--force")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(work / "cover.png")
    with Image.open(work / "cover.png") as image:
        assert image.format == "PNG"


def test_a_folder_never_loses_a_file_to_a_name_clash(
    run: Run, api: dict[str, str], work: Path
) -> None:
    first = run("generate", "a quiet harbour", "-o", "out/", "--json")
    second = run("generate", "a quiet harbour", "-o", "out/", "--json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    paths = json.loads(first.stdout)["paths"] + json.loads(second.stdout)["paths"]
    assert len(set(paths)) == 2 and all(Path(p).is_file() for p in paths)
    assert len(images_in(work / "out")) == 2


# -- a save that fails after payment ------------------------------------------------------------


def test_a_failed_save_says_paid_and_how_to_save(
    api: dict[str, str], sandbox: Any, work: Path
) -> None:
    proc = start(["generate", "a ceramic owl [sandbox:seconds=2]", "-o", "out/"], api, work)
    read_until(proc, "submitted")
    (work / "out").write_text("a file where the folder should be")  # the save will fail
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == contract.EXIT_OTHER, err
    line = one_line_error(err)
    [row] = history_rows(api)
    task_id = row["task_id"]
    assert f"task {task_id} is paid ($0.05) but its image was not saved" in line
    assert f"Save it with: fluxclaw resume {task_id}" in line
    assert row["status"] == "unsaved" and "not saved" in row["error"]
    assert json.loads(row["urls"]) and out == ""
    (work / "out").unlink()
    again = subprocess.run(
        [FLUXCLAW, "resume", task_id], env=api, cwd=work, capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 0, again.stderr
    [saved] = images_in(work / "out")
    assert saved.name.endswith(f"-a-ceramic-owl-sandbox-seconds-2-{task_id[:8]}.png")
    assert history_rows(api)[0]["status"] == "completed"
    assert len(charges(sandbox)) == 1


# -- resuming restores the whole job ------------------------------------------------------------


def test_wait_after_async_names_and_describes_the_file_as_the_run_would(
    run: Run, api: dict[str, str], sandbox: Any, work: Path, tmp_path: Path
) -> None:
    submitted = run(
        "generate",
        "a tin robot reading [sandbox:seconds=0.3]",
        "-m",
        "flex",
        "-a",
        "3:4",
        "-r",
        "2k",
        "-o",
        "shots/",
        "--format",
        "jpeg",
        "--async",
    )
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # From another folder, with no options: everything comes back from the history.
    waited = subprocess.run(
        [FLUXCLAW, "wait", task_id, "--json"],
        env=api,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert waited.returncode == 0, waited.stderr
    [path] = [Path(p) for p in json.loads(waited.stdout)["paths"]]
    assert path.parent == work / "shots" and path.suffix == ".jpg"
    assert "-a-tin-robot-reading-sandbox-seconds" in path.name and task_id[:8] in path.name
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == contract.image_size("3:4", "2k")
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["prompt"] == "a tin robot reading [sandbox:seconds=0.3]"
    assert sidecar["model"] == "flux-2-flex-text-to-image"
    assert sidecar["aspect_ratio"] == "3:4" and sidecar["resolution"] == "2k"
    assert list(elsewhere.iterdir()) == [] and len(charges(sandbox)) == 1


def test_a_dropped_create_is_finished_by_its_key_without_a_second_charge(
    run: Run, api: dict[str, str], sandbox: Any, work: Path
) -> None:
    sandbox.configure(faults={"drop": 1.0})
    done = run("generate", "a glass apple [sandbox:seconds=0.2]", "-o", "out/", "--json")
    assert done.returncode != 0
    line = one_line_error(done.stderr)
    [row] = history_rows(api)
    key = row["idempotency_key"]
    assert row["status"] == "unanswered" and row["task_id"] is None and row["request"]
    assert f"fluxclaw resume {key}" in line
    failure = json.loads(done.stdout)
    assert failure["exit_code"] == done.returncode and "resume" in failure["error"]
    creates = [r for r in sandbox.requests() if r["path"] in CREATES]
    assert len(creates) > 1 and {r["idempotency_key"] for r in creates} == {key}
    [made] = sandbox.tasks()  # every retry was replayed: one task
    sandbox.configure(faults={})
    again = run("resume", key, "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["task_id"] == made["id"] and Path(data["paths"][0]).parent == work / "out"
    assert len(sandbox.tasks()) == 1 and len(charges(sandbox)) == 1
    [row] = history_rows(api)
    assert row["status"] == "completed" and row["task_id"] == made["id"]


def test_sigkill_during_the_create_is_finished_by_resume_without_a_second_charge(
    run: Run, api: dict[str, str], sandbox: Any, work: Path
) -> None:
    sandbox.configure(faults={"slow": 3, "slow_rate": 1.0})  # the create hangs for 3 s
    proc = start(["generate", "a paper crane [sandbox:seconds=0.2]", "-o", "cranes/"], api, work)
    sandbox.wait_until(lambda: any(r["path"] in CREATES for r in sandbox.requests()))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    [row] = history_rows(api)
    assert row["status"] == "submitting" and row["task_id"] is None and row["request"]
    sandbox.configure(faults={})
    again = run("resume", "--json")  # every unfinished task in the history
    assert again.returncode == 0, again.stderr
    [path] = json.loads(again.stdout)["paths"]
    assert Path(path).parent == work / "cranes"
    # Once the killed request's 3 s delay is over, it has been handled (or dropped) too: it
    # carried the same key, so the server still holds one task.
    killed = next(r for r in sandbox.requests() if r["path"] in CREATES)
    sandbox.wait_until(lambda: time.time() > killed["time"] + 3.5)
    assert len(sandbox.tasks()) == 1
    sandbox.wait_until(lambda: len(charges(sandbox)) >= 1)
    assert len(charges(sandbox)) == 1
    assert history_rows(api)[0]["status"] == "completed"
    assert [p.name for p in images_in(work / "cranes")] == [Path(path).name]


# -- one-run sandboxes ---------------------------------------------------------------------------


def test_a_one_run_sandbox_task_is_marked_and_not_resumed(
    run: Run, cli_env: dict[str, str]
) -> None:
    env = {"FLUXCLAW_SANDBOX_SPEED": "100"}
    # A job that outlives its --timeout leaves a row of the sandbox that ended with it.
    made = run(
        "generate",
        "--sandbox",
        "a lantern [sandbox:seconds=5]",
        "--timeout",
        "1",
        "--json",
        env=env,
    )
    assert made.returncode == contract.EXIT_TIMEOUT, made.stderr
    task_id = json.loads(made.stdout)["task_id"]
    [row] = history_rows(cli_env)
    assert row["sandbox"] == 1 and row["task_id"] == task_id
    waited = run("wait", task_id)  # no key needed to learn there is nothing to resume
    assert waited.returncode == contract.EXIT_INVALID
    assert "one-run sandbox" in one_line_error(waited.stderr)
    assert history_rows(cli_env)[0]["status"] == "gone"


def test_ctrl_c_under_sandbox_does_not_claim_the_task_keeps_running(
    cli_env: dict[str, str], work: Path
) -> None:
    env = {**cli_env, "FLUXCLAW_SANDBOX_SPEED": "100"}
    proc = start(["generate", "--sandbox", "a slow moth [sandbox:seconds=30]"], env, work)
    read_until(proc, "submitted")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "one-run sandbox" in rest and "keeps running" not in rest


# -- status, validation and --json --------------------------------------------------------------


def test_status_updates_the_history_row(run: Run, api: dict[str, str], sandbox: Any) -> None:
    made = run("generate", "a chess set [sandbox:seconds=0.2]", "--async")
    task_id = made.stdout.strip()
    sandbox.wait_until(lambda: sandbox.task(task_id)["status"] == "completed")
    shown = run("status", task_id, "--json")
    assert shown.returncode == 0, shown.stderr
    [row] = history_rows(api)
    # Paid, not yet on disk: `unsaved` keeps it among what `fluxclaw resume` finishes.
    assert row["status"] == "unsaved" and row["cost"] == 0.05
    assert json.loads(row["urls"]) == json.loads(shown.stdout)["images"]
    finished = run("resume", "--json")
    assert finished.returncode == 0, finished.stderr
    [row] = history_rows(api)
    assert row["status"] == "completed" and len(json.loads(row["paths"])) == 1


def test_invalid_input_leaves_no_history_row(run: Run, api: dict[str, str]) -> None:
    for args in (
        ["generate", "hi"],
        ["generate", "a cat", "-a", "5:4"],
        ["generate", "a cat", "-m", "x"],
    ):
        assert run(*args).returncode == contract.EXIT_INVALID
    assert history_rows(api) == []


def test_json_failure_keeps_the_task_id(run: Run, api: dict[str, str]) -> None:
    done = run("generate", "a burnt toast [sandbox:fail]", "--json")
    assert done.returncode == contract.EXIT_TASK_FAILED
    failure = json.loads(done.stdout)
    [row] = history_rows(api)
    assert failure["task_id"] == row["task_id"] and failure["exit_code"] == 7
    assert "Content policy violation" in failure["error"]
    timed_out = run("generate", "a slow snail [sandbox:seconds=30]", "--json", "--timeout", "1")
    assert timed_out.returncode == contract.EXIT_TIMEOUT
    assert json.loads(timed_out.stdout)["task_id"] == history_rows(api)[1]["task_id"]


# -- history files from the earlier release -------------------------------------------------------


def test_a_history_written_by_the_first_schema_keeps_working(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    import fluxclaw

    with fluxclaw.Client(api_key=KEY, base_url=sandbox.base_url) as client:
        task = client.submit_generate("an old row [sandbox:seconds=0.2]")
    path = Path(api["FLUXCLAW_DATA_DIR"]) / "history.sqlite"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:  # the schema as the first release wrote it
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO tasks (task_id, idempotency_key, action, model, prompt, params, status,"
            " base_url, created_at, updated_at) VALUES (?, ?, 'text_to_image', ?, ?, '{}',"
            " 'interrupted', ?, ?, ?)",
            (
                task.id,
                task.idempotency_key,
                "flux-2-pro-text-to-image",
                "an old row [sandbox:seconds=0.2]",
                sandbox.base_url,
                time.time(),
                time.time(),
            ),
        )
    listed = run("history", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["task_id"] == task.id
    done = run("wait", task.id, "--json")
    assert done.returncode == 0, done.stderr
    assert "an-old-row" in Path(json.loads(done.stdout)["paths"][0]).name
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
        status = db.execute("SELECT status FROM tasks").fetchone()[0]
    assert (
        names
        == [
            "_m001_tasks",
            "_m002_jobs",
            "_m003_durations",
            "_m004_ledger",
            "_m005_prices",
            "_m006_hidden",
        ]
        and status == "completed"
    )
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    task_id TEXT UNIQUE,
    idempotency_key TEXT,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    cost REAL,
    error TEXT,
    urls TEXT NOT NULL DEFAULT '[]',
    paths TEXT NOT NULL DEFAULT '[]',
    base_url TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
"""
