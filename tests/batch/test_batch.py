"""`fluxclaw batch` as a real subprocess against the sandbox: bad rows by line, resuming, the
budget, SIGKILL at random moments, a 429 storm, shared uploads, and the library door."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from fluxclaw import AsyncClient, PollPolicy, contract
from fluxclaw.batch import read_rows, run_batch
from fluxclaw.history import History
from tests.cli.conftest import interruptible

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-batch-SECRET-3e1d"


def write_rows(path: Path, rows: list[dict[str, Any]], extra: str = "") -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + extra)
    return path


def batch(
    cli_env: dict[str, str], sandbox: Any, cwd: Path, *args: str, speed: float = 100
) -> subprocess.CompletedProcess[str]:
    env = {**cli_env, "RUNAPI_API_KEY": KEY, "FLUXCLAW_TIME_SCALE": str(1 / speed)}
    return subprocess.run(
        [FLUXCLAW, "batch", *args, "--base-url", sandbox.base_url, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def images_in(out: Path) -> set[Path]:
    return {p for p in out.iterdir() if p.suffix in (".png", ".jpg", ".webp")}


def test_bad_rows_are_reported_by_line_and_the_rest_run(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = [{"prompt": f"a catalog photo of mug {i}"} for i in range(6)]
    rows[1] = {"prompt": "ok", "model": "mega"}  # line 2: a model RunAPI does not have
    rows[3] = {"prompt": "a fine prompt", "name": "../../escape"}  # line 4: a name with a folder
    rows[4] = {"prompt": "a fine prompt", "ratio": "1:1"}  # line 5: a misspelt field
    file = write_rows(tmp_path / "rows.jsonl", rows, "{not json\n")  # line 7
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert [b["line"] for b in summary["bad_rows"]] == [2, 4, 5, 7]
    for line in (2, 4, 5, 7):
        assert f"line {line}: " in done.stderr
    assert summary["done"] == 3 and file.exists()
    assert len(sandbox.ledger()["charges"]) == 3
    assert not list(tmp_path.rglob("*escape*"))
    # Run again: the done rows are skipped, nothing is created or paid again.
    creates = len([r for r in sandbox.requests() if r["method"] == "POST"])
    again = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert json.loads(again.stdout)["done"] == 3
    assert len([r for r in sandbox.requests() if r["method"] == "POST"]) == creates


def test_the_budget_is_never_passed(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = [{"prompt": f"a poster of city {i}"} for i in range(30)]
    rows.append({"prompt": "a max image", "model": "max", "aspect_ratio": "1:1"})
    write_rows(tmp_path / "rows.jsonl", rows)
    done = batch(
        cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "-c", "8", "--budget", "0.5"
    )
    assert done.returncode == 8, done.stderr
    ledger = sandbox.ledger()
    assert sum(c["amount_cents"] for c in ledger["charges"]) <= 50
    assert len(ledger["charges"]) == 10  # $0.05 each
    lines = manifest(tmp_path / "out")
    assert Counter(line["status"] for line in lines) == {"done": 10, "over_budget": 21}
    # Max's price is unknown to the contract; the sandbox's price schedules state one (its
    # placeholder), and the budget counts it at that price.
    refused_max = next(line for line in lines if line["model"] == "max")
    assert "would pass the budget" in refused_max["error"]


def test_sigkill_at_random_moments_pays_each_row_once(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    # Pro 1k is ~6 s; at speed 8 the 200 rows take ~10 s of work at concurrency 16, more than
    # six runs cut short at 0.6 to 2.5 s can finish, so every run is really killed mid-way.
    speed = 8
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=speed)
    rows = [{"prompt": f"a product shot of sneaker {i}", "resolution": "1k"} for i in range(200)]
    write_rows(tmp_path / "rows.jsonl", rows)
    env = {**cli_env, "RUNAPI_API_KEY": KEY, "FLUXCLAW_TIME_SCALE": str(1 / speed)}
    args = [FLUXCLAW, "batch", "rows.jsonl", "-o", "out", "-c", "16", "--base-url"]
    args.append(sandbox.base_url)
    chance = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        moment = chance.uniform(0.6, 2.5)
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
    assert kills >= 5, "the batch finished before it could be killed five times"
    final = subprocess.run(
        [*args, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr[-2000:]
    lines = manifest(tmp_path / "out")
    assert len(lines) == 200 and all(line["status"] == "done" for line in lines)
    charges = sandbox.ledger()["charges"]
    assert len(charges) == 200 and len({c["task_id"] for c in charges}) == 200
    assert len(sandbox.tasks()) == 200  # no task was created twice
    out = tmp_path / "out"
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    assert images_in(out) == {Path(line["path"]) for line in lines}  # no orphans
    for path in sorted(images_in(out))[::20]:
        with Image.open(path) as image:
            image.load()


def test_a_429_storm_still_completes_every_row(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, rate_limit=8)
    write_rows(tmp_path / "rows.jsonl", [{"prompt": f"a storm photo {i}"} for i in range(60)])
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "-c", "60")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["done"] == 60
    assert len(sandbox.ledger()["charges"]) == 60
    assert any(r["status"] == 429 for r in sandbox.requests()), "the storm never came"


def test_remix_rows_share_one_upload(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    Image.new("RGB", (64, 64), (10, 120, 200)).save(tmp_path / "shoe.png")
    rows = [{"prompt": f"the shoe on a beach {i}", "images": ["shoe.png"]} for i in range(4)]
    rows.append(
        {"prompt": "the shoe in the snow", "images": ["shoe.png"], "format": "jpeg", "name": "snow"}
    )
    write_rows(tmp_path / "rows.jsonl", rows)
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert done.returncode == 0, done.stderr
    prepares = [r for r in sandbox.requests() if r["path"].endswith("/files/prepare")]
    assert len(prepares) == 1
    assert (tmp_path / "out" / "snow.jpg").is_file()
    assert len(sandbox.ledger()["charges"]) == 5


def test_the_library_door_runs_and_resumes(fluxclaw_sandbox_factory: Any, tmp_path: Path) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    file = write_rows(
        tmp_path / "rows.jsonl", [{"prompt": f"a notebook cover {i}"} for i in range(5)]
    )
    rows, bad = read_rows(file)

    async def go() -> Any:
        async with AsyncClient(
            api_key=KEY, base_url=sandbox.base_url, poll=PollPolicy(time_scale=0.01)
        ) as client:
            return await run_batch(client, rows, tmp_path / "out", bad_rows=bad, concurrency=3)

    first = asyncio.run(go())
    assert first.counts == {"done": 5} and not bad
    second = asyncio.run(go())
    assert second.counts == {"done": 5}
    assert len(sandbox.ledger()["charges"]) == 5
    # The rows are the user's ledger rows (FLUXCLAW_DATA_DIR), tagged with the batch.
    rows_of = History().in_batch(str((tmp_path / "out").resolve()))
    assert len(rows_of) == 5 and {r.status for r in rows_of} == {"completed"}
    assert (tmp_path / "out" / "index.html").is_file()


def test_csv_rows_with_defaults(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    (tmp_path / "rows.csv").write_text(
        "prompt,aspect_ratio,name\na red chair in a white room,3:4,chair\na blue lamp,,lamp\n"
    )
    done = batch(
        cli_env, sandbox, tmp_path, "rows.csv", "-o", "out", "-m", "flex", "--aspect-ratio", "16:9"
    )
    assert done.returncode == 0, done.stderr
    tasks = sandbox.tasks()
    ratios = sorted(t["request"]["aspect_ratio"] for t in tasks)
    assert ratios == ["16:9", "3:4"] and all("flex" in t["model"] for t in tasks)
    assert {p.name for p in images_in(tmp_path / "out")} == {"chair.png", "lamp.png"}


def test_a_missing_file_is_a_one_line_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [FLUXCLAW, "batch", "nope.jsonl", "-o", "out"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert "nope.jsonl" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_callbacks_retry_failed_and_the_history_gallery(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = [{"prompt": f"a called-back kite {i}"} for i in range(4)]
    rows.append({"prompt": "a kite that fails [sandbox:fail]"})
    write_rows(tmp_path / "rows.jsonl", rows)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    callback = f"http://127.0.0.1:{port}"
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--callback-url", callback)
    assert done.returncode == 1, done.stderr  # the failing row
    assert json.loads(done.stdout)["done"] == 4
    tasks = sandbox.tasks()
    assert all(t["request"]["callback_url"].startswith(callback) for t in tasks)
    assert all(t["callback_deliveries"] for t in tasks)
    # --retry-failed sends the failed row again with a new key (the old one would replay it).
    again = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--retry-failed")
    assert again.returncode == 1 and json.loads(again.stdout)["failed"] == 1
    assert len(sandbox.tasks()) == 6
    keys = [t["idempotency_key"] for t in sandbox.tasks() if "fails" in t["request"]["prompt"]]
    assert len(set(keys)) == 2
    # The same gallery from the history: every saved image of these runs, linked from disk.
    env = {**cli_env, "RUNAPI_API_KEY": KEY}
    page = subprocess.run(
        [FLUXCLAW, "gallery", "--from-history", "history-page"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "history-page" / "index.html").read_text()
    assert html.count('<div class="card">') == 4 and "a kite that fails" in html


def test_progress_off_a_terminal_and_each_failure_on_its_own_line(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """Into a log: the status a second at most, never held back past its second, and a line
    per failed row as it fails; --no-safety-checker reaches the rows whose model has one."""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=1)
    rows = [{"prompt": f"a slow teapot {i} [sandbox:seconds=2]"} for i in range(4)]
    rows += [{"prompt": "a cursed vase [sandbox:fail]", "model": "pro"}]
    rows += [{"prompt": "a plain mug [sandbox:seconds=2]", "model": "max"}]
    write_rows(tmp_path / "rows.jsonl", rows)
    done = batch(
        cli_env,
        sandbox,
        tmp_path,
        "rows.jsonl",
        "-o",
        "out",
        "-c",
        "2",
        "--no-safety-checker",
        speed=1,
    )
    assert done.returncode == contract.EXIT_OTHER, done.stderr  # one row failed
    lines = done.stderr.splitlines()
    assert [line for line in lines if "failed:" in line] == [
        line for line in lines if line.startswith("line 5 failed: ")
    ]
    assert sum(line.startswith("line 5 failed: ") for line in lines) == 1
    statuses = [line for line in lines if line.startswith("batch: ") and " in flight" in line]
    elapsed = float(statuses[-1].rsplit("(", 1)[1].rstrip("s)"))
    assert 2 <= len(statuses) <= elapsed + 2  # said while it ran, a second apart at most
    sent = {t["request"]["prompt"]: t["request"] for t in sandbox.tasks()}
    assert all(
        r.get("enable_safety_checker") is False for r in sent.values() if "max" not in r["model"]
    )
    assert "enable_safety_checker" not in sent["a plain mug [sandbox:seconds=2]"]  # Max has none


def test_ctrl_c_says_what_still_runs_and_the_same_command_finishes_it(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=1)
    rows = [{"prompt": f"a patient owl {i} [sandbox:seconds=4]"} for i in range(3)]
    write_rows(tmp_path / "rows.jsonl", rows)
    env = {**cli_env, "RUNAPI_API_KEY": KEY}
    command = [FLUXCLAW, "batch", "rows.jsonl", "-o", "out", "-c", "3"]
    command += ["--base-url", sandbox.base_url]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 20
    while len(sandbox.tasks()) < 3:  # all three paid for and running
        assert time.monotonic() < deadline and proc.poll() is None, "the rows never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: 3 task(s) were in flight and keep running on RunAPI" in err
    assert "run the same command again" in err and "Traceback" not in err
    # Word for word the interrupted command (batch() would add --json).
    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert len(images_in(tmp_path / "out")) == 3 and len(sandbox.tasks()) == 3  # paid once
