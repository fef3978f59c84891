"""The ledger's caps and overwrite rule through the real CLI: the daily budget holds under
--no-history, for every spelling of one API, and a config file that cannot be read stops the
create instead of switching the cap off; wait/resume never replace a file without --force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxclaw import contract

from .conftest import Run, history_rows, one_line_error


def posts(sandbox: Any) -> int:
    return len([r for r in sandbox.requests() if r["method"] == "POST"])


def test_the_daily_cap_holds_under_no_history_and_every_spelling_of_the_api(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    assert run("config", "--daily-budget", "0.10").returncode == 0
    port = sandbox.base_url.rsplit(":", 1)[1].strip("/")
    spellings = [
        f"http://localhost:{port}",
        f"http://127.0.0.1:{port}/",
        f"HTTP://127.0.0.1:{port}/./",
    ]
    first = run("generate", "a quiet photo", "--no-history", "--base-url", spellings[0])
    assert first.returncode == 0, first.stderr
    second = run("generate", "a second photo", "--base-url", spellings[1])
    assert second.returncode == 0, second.stderr
    sent = posts(sandbox)
    for spelling in spellings:
        for private in ((), ("--no-history",)):
            refused = run("generate", "one too many", *private, "--base-url", spelling)
            assert refused.returncode == contract.EXIT_BUDGET, refused.stderr
            assert "today's budget of $0.10" in one_line_error(refused.stderr)
    assert posts(sandbox) == sent
    assert sum(c["amount_cents"] for c in sandbox.ledger()["charges"]) == 10
    # --no-history kept the money and nothing else.
    quiet = [row for row in history_rows(api) if row["private"]]
    assert len(quiet) == 1 and quiet[0]["prompt"] == "" and quiet[0]["cost"] == 0.05
    assert quiet[0]["paths"] == "[]" and quiet[0]["request"] is None


def test_an_unreadable_config_stops_the_create_and_names_the_file(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    config = Path(api["FLUXCLAW_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{"daily_budget_usd": 0.10,')  # cut short
    done = run("generate", "a photo under a broken config")
    assert done.returncode == contract.EXIT_INVALID
    line = one_line_error(done.stderr)
    assert str(config) in line and "not valid JSON" in line
    assert posts(sandbox) == 0
    stored = run("config", "--daily-budget", "5")  # the command that writes it says so too
    assert stored.returncode == contract.EXIT_INVALID
    assert str(config) in one_line_error(stored.stderr)


def test_wait_and_resume_never_replace_a_file_without_force(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    keep = tmp_path / "work" / "keep.png"
    keep.write_bytes(b"the user's own picture")
    submitted = run("generate", "a lamp [sandbox:seconds=0.2]", "--async")
    task_id = submitted.stdout.strip()
    for command in ("wait", "resume"):
        for name in ("keep.png", "keep.PNG"):
            refused = run(command, task_id, "-o", name)
            assert refused.returncode == contract.EXIT_INVALID, refused.stderr
            assert "already exists; pass --force" in one_line_error(refused.stderr)
    assert keep.read_bytes() == b"the user's own picture"
    forced = run("wait", task_id, "-o", "keep.png", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["paths"] == [str(keep)]
    assert keep.read_bytes() != b"the user's own picture"
    assert len(sandbox.ledger()["charges"]) == 1


def test_the_ledger_and_its_wal_files_are_private_from_the_start(tmp_path: Path) -> None:
    import os
    import stat

    from fluxclaw.history import History

    ledger = History(tmp_path / "data" / "history.sqlite")
    ledger.start(
        action="text_to_image",
        model="m",
        prompt="private",
        params={},
        idempotency_key="k",
        base_url="http://x",
    )
    files = sorted((tmp_path / "data").glob("history.sqlite*"))
    assert {f.name for f in files} >= {"history.sqlite", "history.sqlite-wal"}
    for found in files:  # while the connection is open, -wal and -shm exist
        assert stat.S_IMODE(os.stat(found).st_mode) == 0o600, found.name
    ledger.close()


def test_an_unusable_or_corrupt_history_is_one_line_naming_it(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run("generate", "a lamp", env={"FLUXCLAW_DATA_DIR": str(blocker)})
    assert done.returncode == contract.EXIT_OTHER
    assert str(blocker) in one_line_error(done.stderr)
    data = Path(api["FLUXCLAW_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "history.sqlite").write_bytes(b"this is not a database " * 100)
    for args in (["generate", "a lamp"], ["history"], ["resume"]):
        broken = run(*args)
        assert broken.returncode == contract.EXIT_OTHER, (args, broken.stderr)
        assert "history.sqlite" in one_line_error(broken.stderr)
    assert posts(sandbox) == 0
