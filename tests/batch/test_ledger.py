"""One ledger: every paid task counted once across re-runs, doors and processes. Each case runs
`fluxclaw batch` (or the library door) against the sandbox and counts the sandbox's charges and
the files on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import AsyncClient, Client, PollPolicy, contract
from fluxclaw.batch import read_rows, run_batch
from fluxclaw.batch.plan import Defaults
from tests.batch.test_batch import FLUXCLAW, KEY, batch, images_in, manifest, write_rows

ROWS = [{"prompt": f"a studio photo of teapot {i}"} for i in range(3)]


def charges(sandbox: Any) -> int:
    return len(sandbox.ledger()["charges"])


def posts(sandbox: Any) -> int:
    return len([r for r in sandbox.requests() if r["method"] == "POST"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_comments_blank_lines_reordering_and_a_lost_journal_pay_nothing_again(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    file = write_rows(tmp_path / "rows.jsonl", ROWS)
    first = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert first.returncode == 0, first.stderr
    saved = {line["path"] for line in manifest(tmp_path / "out")}
    assert charges(sandbox) == 3 and len(saved) == 3
    body = file.read_text().splitlines()
    variants = [
        "# a comment on top\n" + "\n".join(body) + "\n",  # a comment
        "\n".join(reversed(body)) + "\n",  # reordered
        body[0] + "\n\n\n" + "\n".join(body[1:]) + "\n",  # blank lines
    ]
    for text in variants:
        file.write_text(text)
        again = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["done"] == 3
        assert {line["path"] for line in manifest(tmp_path / "out")} == saved  # nothing renamed
    # The batch's own folder of state, emptied or deleted, and even the user's ledger lost:
    # the keys come from what the rows ask for, so RunAPI replays instead of charging.
    state = tmp_path / "out" / ".fluxclaw"
    for path in state.rglob("*"):
        if path.is_file():
            path.write_bytes(b"")
    ledger = Path(cli_env["FLUXCLAW_DATA_DIR"]) / "history.sqlite"
    for path in ledger.parent.glob("history.sqlite*"):
        path.unlink()
    again = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert again.returncode == 0, again.stderr
    assert charges(sandbox) == 3 and len(sandbox.tasks()) == 3
    assert len(images_in(tmp_path / "out")) == 3  # the same images, not copies


def test_an_edited_prompt_or_option_is_planned_and_needs_yes_and_keeps_the_paid_image(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = [*ROWS, {"prompt": "a hero shot of the teapot", "name": "hero"}]
    file = write_rows(tmp_path / "rows.jsonl", rows)
    assert batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out").returncode == 0
    hero = tmp_path / "out" / "hero.png"
    paid = digest(hero)
    before = posts(sandbox)

    rows[3] = {"prompt": "a hero shot of the teapot, at night", "name": "hero"}
    write_rows(file, rows)
    plan = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    found = json.loads(plan.stdout)
    assert {k: found[k] for k in ("done", "new", "changed", "unfinished", "failed", "bad")} == {
        "done": 3,
        "new": 0,
        "changed": 1,
        "unfinished": 0,
        "failed": 0,
        "bad": 0,
    }
    assert found["estimate_usd"] == 0.05 and len(found["rows"]) == 4
    refused = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert refused.returncode == contract.EXIT_INVALID
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert posts(sandbox) == before  # nothing sent for a dry run or a refused plan
    made = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--yes")
    assert made.returncode == 0, made.stderr
    assert charges(sandbox) == 5
    assert digest(hero) == paid  # the paid image stays
    newest = next(line for line in manifest(tmp_path / "out") if line["line"] == 4)
    assert Path(newest["path"]).name == "hero-2.png"

    # A changed default (-m flex) changes every row it reaches: refused, then made beside.
    refused = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "-m", "flex")
    assert refused.returncode == contract.EXIT_INVALID and charges(sandbox) == 5
    made = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "-m", "flex", "--yes")
    assert made.returncode == 0, made.stderr
    assert charges(sandbox) == 9 and len(images_in(tmp_path / "out")) == 9
    assert json.loads(made.stdout)["charged_this_run_usd"] == round(4 * 0.14, 2)


def test_names_are_compared_as_saved_and_a_users_file_is_never_replaced(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(out / "hero.png")
    mine = digest(out / "hero.png")
    rows = [
        {"prompt": "a jpeg of a kettle", "name": "x.jpg"},
        {"prompt": "another jpeg of a kettle", "name": "x.jpeg"},  # also saved as x.jpg
        {"prompt": "a webp of a kettle", "name": "y.webp"},  # its own suffix beats --format
        {"prompt": "a png of a kettle", "name": "y"},  # --format png: y.png
        {"prompt": "a second png of a kettle", "name": "Y.png"},  # y.png too (case)
        {"prompt": "the hero kettle", "name": "hero"},
    ]
    write_rows(tmp_path / "rows.jsonl", rows)
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--format", "png")
    summary = json.loads(done.stdout)
    assert [b["line"] for b in summary["bad_rows"]] == [2, 5]
    assert all("already used by line" in b["error"] for b in summary["bad_rows"])
    assert charges(sandbox) == 4
    assert digest(out / "hero.png") == mine  # the user's own file
    for name in ("hero-2.png", "x.jpg", "y.webp", "y.png"):
        assert (out / name).is_file(), name


def test_the_budget_holds_tasks_that_outlive_the_timeout(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    # At speed 2 a Pro 1k task takes ~3 s, more than the 1 s each row may wait: every row
    # times out while its task runs on, and is still counted against the budget.
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=2)
    write_rows(tmp_path / "rows.jsonl", [{"prompt": f"a slow vase {i}"} for i in range(4)])
    args = ("rows.jsonl", "-o", "out", "--budget", "0.10", "--timeout", "1", "-c", "1")
    done = batch(cli_env, sandbox, tmp_path, *args, speed=2)
    summary = json.loads(done.stdout)
    assert done.returncode != 0
    created = posts(sandbox)
    assert created == 2, done.stderr  # $0.05 each: two reserve the whole budget
    assert summary["over_budget"] == 2 and summary["running_usd"] == 0.10
    assert "more for tasks still running" in done.stderr
    # Re-run once the tasks are done: they are finished, not made again, and nothing more fits.
    sandbox.wait_until(lambda: charges(sandbox) == 2, timeout=30)
    again = batch(cli_env, sandbox, tmp_path, *args[:-4], "-c", "1")
    summary = json.loads(again.stdout)
    assert summary["done"] == 2 and summary["over_budget"] == 2
    assert summary["spent_usd"] == 0.10 and charges(sandbox) == 2 and posts(sandbox) == created


def test_a_library_batch_is_finished_by_the_cli(
    cli_env: dict[str, str],
    fluxclaw_sandbox_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=2)
    Image.new("RGB", (32, 32), (0, 90, 40)).save(tmp_path / "leaf.png")
    rows = [{"prompt": f"the leaf as a poster {i}", "images": ["leaf.png"]} for i in range(2)]
    file = write_rows(tmp_path / "rows.jsonl", rows)
    found, bad = read_rows(file)

    async def library() -> Any:
        async with AsyncClient(
            api_key=KEY, base_url=sandbox.base_url, poll=PollPolicy(time_scale=0.5)
        ) as client:
            return await run_batch(
                client, found, tmp_path / "out", sources_from=tmp_path, timeout=1, concurrency=2
            )

    monkeypatch.setenv("FLUXCLAW_DATA_DIR", cli_env["FLUXCLAW_DATA_DIR"])  # the user's ledger
    first = asyncio.run(library())
    assert first.counts == {"error": 2} and not bad
    creates = [r for r in sandbox.requests() if r["path"].endswith("/remix_image")]
    assert len(creates) == 2
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", speed=2)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["done"] == 2
    assert charges(sandbox) == 2 and len(sandbox.tasks()) == 2
    assert not [r for r in sandbox.requests() if r["status"] == 409]


def test_a_journal_written_before_the_ledger_finishes_without_a_second_charge(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """The journal schema of 0.x main: one row was sent (its key is on the server, its task
    charged when done) and the process died before the answer was written down."""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    wide = {"prompt": "a wide shot of the teapot", "aspect_ratio": "16:9", "resolution": "2k"}
    write_rows(tmp_path / "rows.jsonl", [*ROWS[:2], wide])
    rows, _ = read_rows(tmp_path / "rows.jsonl")
    out = tmp_path / "out"
    (out / ".fluxclaw").mkdir(parents=True)
    key, unsent = str(uuid.uuid4()), str(uuid.uuid4())
    with Client(api_key=KEY, base_url=sandbox.base_url) as client:
        sent = client.submit_generate(rows[0].prompt, idempotency_key=key)
    with sqlite3.connect(out / ".fluxclaw" / "journal.sqlite") as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE rows (line INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL,"
            " idempotency_key TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT, cost REAL,"
            " path TEXT, error TEXT, prompt TEXT NOT NULL DEFAULT '', model TEXT,"
            " aspect_ratio TEXT, resolution TEXT, updated_at REAL NOT NULL);"
        )
        db.execute("INSERT INTO meta VALUES ('batch_id', ?)", (str(uuid.uuid4()),))
        db.execute(
            "INSERT INTO rows (line, fingerprint, idempotency_key, state, prompt, updated_at)"
            " VALUES (1, ?, ?, 'submitted', ?, 0)",
            (rows[0].fingerprint(), key, rows[0].prompt),
        )
        # The process died before this one's create went out: resent, it asks for the same.
        db.execute(
            "INSERT INTO rows (line, fingerprint, idempotency_key, state, prompt, updated_at)"
            " VALUES (3, ?, ?, 'submitted', ?, 0)",
            (rows[2].fingerprint(), unsent, rows[2].prompt),
        )
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    assert done.returncode == 0, done.stderr
    lines = manifest(out)
    assert [line["status"] for line in lines] == ["done", "done", "done"]
    assert lines[0]["task_id"] == sent.id  # finished by its old key: RunAPI replayed it
    assert charges(sandbox) == 3 and len(sandbox.tasks()) == 3
    [resent] = [t for t in sandbox.tasks() if t["idempotency_key"] == unsent]
    assert resent["request"]["aspect_ratio"] == "16:9"
    assert resent["request"]["output_resolution"] == "2k"


def test_a_batch_that_reaches_the_daily_cap_ends_with_exit_8(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    env = {**cli_env, "RUNAPI_API_KEY": KEY}
    config = subprocess.run(
        [FLUXCLAW, "config", "--daily-budget", "0.10"], env=env, capture_output=True, text=True
    )
    assert config.returncode == 0, config.stderr
    write_rows(tmp_path / "rows.jsonl", [{"prompt": f"a daily mug {i}"} for i in range(4)])
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "-c", "1")
    assert done.returncode == contract.EXIT_BUDGET, done.stderr
    summary = json.loads(done.stdout)
    assert summary["done"] == 2 and summary["over_budget"] == 2
    assert charges(sandbox) == 2


def test_defaults_is_still_importable_from_the_batch_package() -> None:
    from fluxclaw.batch import Defaults as Exported

    assert Exported is Defaults


def test_the_history_gallery_keeps_same_named_images_of_different_batches_apart(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    for n in range(3):
        write_rows(tmp_path / "rows.jsonl", [{"prompt": f"catalog {n} cover", "name": "cover"}])
        done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", f"out{n}")
        assert done.returncode == 0, done.stderr
    page = subprocess.run(
        [FLUXCLAW, "gallery", "--from-history", "page"],
        cwd=tmp_path,
        env={**cli_env, "RUNAPI_API_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert page.returncode == 0, page.stderr
    thumbs = sorted((tmp_path / "page" / ".fluxclaw" / "thumbs").glob("cover.png-*.jpg"))
    assert len(thumbs) == 3 and len({digest(t) for t in thumbs}) == 3
    html = (tmp_path / "page" / "index.html").read_text()
    assert all(t.name in html for t in thumbs)


def test_rows_that_share_a_prompt_can_be_reordered_and_the_folder_moved(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = [
        {"prompt": "a cat on a chair", "aspect_ratio": "1:1"},
        {"prompt": "a cat on a chair", "aspect_ratio": "16:9"},
        {"prompt": "a dog on a chair"},
    ]
    write_rows(tmp_path / "rows.jsonl", rows)
    assert batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out").returncode == 0
    write_rows(tmp_path / "rows.jsonl", [rows[1], rows[2]])  # reordered, one left out
    plan = json.loads(
        batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out", "--dry-run").stdout
    )
    assert (plan["done"], plan["new"], plan["changed"]) == (2, 0, 0)
    # The folder moved (or renamed): its files say what they are; nothing is paid again.
    (tmp_path / "out").rename(tmp_path / "moved")
    write_rows(tmp_path / "rows.jsonl", rows)
    again = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "moved")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["done"] == 3 and charges(sandbox) == 3
    assert all(
        Path(line["path"]).parent == tmp_path / "moved" for line in manifest(tmp_path / "moved")
    )


def test_one_task_is_one_ledger_row_even_when_two_processes_sent_its_key(tmp_path: Path) -> None:
    from fluxclaw.history import History

    first, second = History(tmp_path / "h.sqlite"), History(tmp_path / "h.sqlite")
    task = str(uuid.uuid4())
    common: dict[str, Any] = {"action": "text_to_image", "model": "m", "prompt": "p", "params": {}}
    a = first.start(idempotency_key="k", base_url="http://x", **common)
    b = second.start(idempotency_key="k", base_url="http://x", **common)
    assert first.update(a, task_id=task, status="processing") == a
    assert second.update(b, task_id=task, status="processing") == a  # merged into the first
    assert [e.id for e in first.search(limit=10)] == [a]


def test_hostile_batch_files_give_bad_rows_or_one_clear_error(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    nested = {"prompt": "deep", "name": None}
    deep = "[" * 5000 + '"x"' + "]" * 5000
    lines = [
        json.dumps({"prompt": "a line with\u2028a raw line separator inside"}),  # line 1
        '{"prompt": "nested", "images": ' + deep + "}",  # line 2: bad, not a crash
        json.dumps({"prompt": "a NUL \x00 inside"}),  # line 3: bad
        json.dumps(nested | {"prompt": "a fine teapot photo"}),  # line 4
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = batch(cli_env, sandbox, tmp_path, "rows.jsonl", "-o", "out")
    summary = json.loads(done.stdout)
    assert [b["line"] for b in summary["bad_rows"]] == [2, 3], done.stderr
    assert summary["done"] == 2 and "Traceback" not in done.stderr
    # A CSV cell past the field limit Python's csv module has by default, and a file of bad rows.
    (tmp_path / "big.csv").write_text("prompt\n" + "a teapot " * 20_000 + "\n")
    big = batch(cli_env, sandbox, tmp_path, "big.csv", "-o", "out2")
    assert big.returncode == contract.EXIT_INVALID and "Traceback" not in big.stderr
    assert "prompt has" in big.stderr  # a bad row (too long a prompt), not an internal error
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    endless = batch(cli_env, sandbox, tmp_path, "zero.jsonl", "-o", "out3")
    assert endless.returncode == contract.EXIT_INVALID
    assert "line 1 is longer than 1024 KiB" in endless.stderr
    assert charges(sandbox) == 2


def test_csv_rows_are_named_by_the_line_they_start_on(tmp_path: Path) -> None:
    from fluxclaw.batch.rows import BadFile

    file = tmp_path / "rows.csv"
    file.write_text('prompt,name\n"a cat\non two lines",cat\n"a dog",dog\n,empty\n"a bird",bird\n')
    rows, bad = read_rows(file)
    assert [r.line for r in rows] == [2, 4, 6] and [b.line for b in bad] == [5]
    file.write_text("prompt\n" + "a" * (1024 * 1024 + 10) + "\n")  # one endless line
    with pytest.raises(BadFile, match="line 2 is longer than 1024 KiB"):
        read_rows(file)
