"""`fluxclaw history` for people: the table, `show`, `--pending`, `forget`, short id prefixes
for wait/status/resume/show, and a wrong id that never leaves `resume` failing for good.

Everything here that reads only the history must send no request: each such test compares the
sandbox's request log before and after."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fluxclaw import contract
from fluxclaw.history import History

from .conftest import KEY, Run, history_rows, one_line_error

LIST_FIELDS = {
    "task_id",
    "status",
    "action",
    "model",
    "prompt",
    "params",
    "cost",
    "error",
    "urls",
    "paths",
    "base_url",
    "idempotency_key",
    "sandbox",
    "created_at",
    "updated_at",
}
HEADER = "time              id        status     model  cost   sandbox  prompt"


@contextmanager
def ledger(env: dict[str, str]) -> Iterator[History]:
    """The CLI's own history file, opened in this process."""
    history = History(Path(env["FLUXCLAW_DATA_DIR"]) / "history.sqlite")
    try:
        yield history
    finally:
        history.close()


def put(
    env: dict[str, str],
    task_id: str | None,
    *,
    key: str | None = None,
    status: str = "completed",
    prompt: str = "a hand-made row",
    model: str = "flux-2-pro-text-to-image",
    base_url: str | None = None,
    cost: float | None = None,
    error: str | None = None,
    batch: str | None = None,
    identity: str | None = None,
) -> int:
    """A row as the engine would have left it."""
    with ledger(env) as history:
        row = history.start(
            action="text_to_image",
            model=model,
            prompt=prompt,
            params={"model": "pro"},
            idempotency_key=key,
            base_url=base_url,
            task_id=task_id,
            estimate_cents=5,
            batch=batch,
            identity=identity,
        )
        history.update(row, status=status, cost=cost, error=error)
    return row


def when(created_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created_at))


def made(run: Run, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run("generate", *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# -- 1. the table ----------------------------------------------------------------------------------


def test_history_is_an_aligned_table_with_a_header(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    long = "a kite over a wide beach at noon, " * 4
    pro = made(run, "a red bicycle at dawn")
    flex = made(run, long, "-m", "flex")
    local = made(run, "a boat in a bottle", "--sandbox", env={"FLUXCLAW_SANDBOX_SPEED": "100"})
    rows = {row["task_id"]: row for row in history_rows(api)}
    sent = len(sandbox.requests())

    done = run("history")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    clipped = " ".join(long.split())[:57] + "..."
    assert done.stdout.splitlines() == [
        HEADER,
        f"{when(rows[local['task_id']]['created_at'])}  {local['task_id'][:8]}  completed  pro"
        "    $0.05  yes      a boat in a bottle",
        f"{when(rows[flex['task_id']]['created_at'])}  {flex['task_id'][:8]}  completed  flex"
        f"   $0.14           {clipped}",
        f"{when(rows[pro['task_id']]['created_at'])}  {pro['task_id'][:8]}  completed  pro"
        "    $0.05           a red bicycle at dawn",
    ]
    assert len(sandbox.requests()) == sent  # the history is local


def test_the_old_forms_of_history_still_work(run: Run, api: dict[str, str]) -> None:
    first = made(run, "a red bicycle at dawn")
    second = made(run, "a lighthouse in fog")

    searched = run("history", "bicycle")
    assert searched.returncode == 0, searched.stderr
    assert searched.stdout.splitlines()[0] == HEADER
    assert [line.split()[2] for line in searched.stdout.splitlines()[1:]] == [first["task_id"][:8]]

    for args in (["history", "--json"], ["history", "-n", "5", "--json"]):
        listed = run(*args)
        assert listed.returncode == 0, listed.stderr
        objects = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [o["task_id"] for o in objects] == [second["task_id"], first["task_id"]]
        assert all(set(o) == LIST_FIELDS for o in objects)  # --json unchanged

    for args in (
        ["history", "fog", "--json"],
        ["history", "--json", "fog"],
        ["history", "-n", "1", "--json"],
        ["history", "--limit", "1", "--json"],
    ):
        one = run(*args)
        assert one.returncode == 0, one.stderr
        [line] = one.stdout.splitlines()
        assert json.loads(line)["task_id"] == second["task_id"]

    nothing = run("history", "zebra")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert nothing.stderr == "no tasks match 'zebra'\n"

    # A search for a subcommand's name: after `--`, as for any command.
    word = run("history", "--", "show")
    assert word.returncode == 0 and word.stderr == "no tasks match 'show'\n"

    unquoted = run("history", "red", "bicycle")
    assert unquoted.returncode == contract.EXIT_INVALID
    assert "bicycle" in one_line_error(unquoted.stderr) and unquoted.stdout == ""


def test_history_help_shows_the_list_options_and_the_subcommands(run: Run) -> None:
    done = run("history", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "Usage: fluxclaw history [OPTIONS] [TEXT]\n       fluxclaw history COMMAND [ARGS]...\n"
    )
    assert "Show at most this many tasks" in done.stdout  # -n/--limit has a help text now
    assert "--pending" in done.stdout
    assert "  show " in done.stdout and "  forget " in done.stdout


def test_empty_history_lists_nothing(run: Run) -> None:
    done = run("history")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "no tasks yet\n"
    pending = run("history", "--pending")
    assert pending.returncode == 0 and pending.stderr == "no pending tasks yet\n"


# -- 2. history show -------------------------------------------------------------------------------


def test_show_tells_everything_about_one_task_and_sends_nothing(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    data = made(run, "a red bicycle at dawn", "-a", "16:9", "-m", "flex", "-o", "pics/")
    [row] = history_rows(api)
    sent = len(sandbox.requests())

    shown = run("history", "show", data["task_id"][:8])
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    lines = dict(
        (line[:16].strip(), line[17:]) for line in shown.stdout.splitlines() if line[:16].strip()
    )
    assert lines["task id"] == data["task_id"]
    assert lines["idempotency key"] == row["idempotency_key"]
    assert lines["status"] == "completed"
    assert lines["model"] == "flux-2-flex-text-to-image (flex)"
    assert lines["prompt"] == "a red bicycle at dawn"
    assert "aspect_ratio=16:9" in lines["options"]
    assert lines["cost"] == "$0.14 (estimate $0.14)"
    assert lines["sandbox"] == "no"
    assert lines["base url"] == sandbox.base_url.rstrip("/")
    assert lines["batch"] == "-"
    assert lines["paths"] == data["paths"][0]
    assert lines["error"] == "-"

    as_json = run("history", "show", data["task_id"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert found["task_id"] == data["task_id"] and found["paths"] == data["paths"]
    assert found["idempotency_key"] == row["idempotency_key"]
    assert found["model_family"] == "flex" and found["cost"] == 0.14
    assert found["params"]["aspect_ratio"] == "16:9"
    assert found["hidden"] is False and found["batch"] is None
    assert found["base_url"] == sandbox.base_url.rstrip("/")
    for done in (shown, as_json):
        assert KEY not in done.stdout + done.stderr
    assert len(sandbox.requests()) == sent


def test_show_never_prints_a_key_a_row_holds(run: Run, api: dict[str, str]) -> None:
    task_id = str(uuid.uuid4())
    put(
        api,
        task_id,
        key=str(uuid.uuid4()),
        status="error",
        base_url=f"https://user:{KEY}@api.example.com/v1?api_key={KEY}#{KEY}",
        error=f"the server echoed {KEY} back",
    )
    for args in (["history", "show", task_id], ["history", "show", task_id, "--json"]):
        done = run(*args)
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout and KEY not in done.stderr
        assert "https://api.example.com/v1" in done.stdout


def test_show_of_an_unknown_task_is_one_error_line(run: Run, api: dict[str, str]) -> None:
    unknown = str(uuid.uuid4())
    done = run("history", "show", unknown)
    assert done.returncode == contract.EXIT_INVALID
    assert one_line_error(done.stderr) == (
        f"error: task {unknown} is not in the history; `fluxclaw status {unknown}` asks the "
        "API about it."
    )
    assert done.stdout == ""


# -- 3. --pending ----------------------------------------------------------------------------------


def test_pending_lists_only_what_may_be_paid_and_is_not_saved(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    made(run, "a finished cat")
    failed = run("generate", "a refused cat [sandbox:fail]")
    assert failed.returncode == contract.EXIT_TASK_FAILED
    waiting = run("generate", "a slow cat [sandbox:seconds=30]", "--async")
    assert waiting.returncode == 0, waiting.stderr
    slow = waiting.stdout.strip()
    unsaved = str(uuid.uuid4())
    put(api, unsaved, key=str(uuid.uuid4()), status="unsaved", cost=0.05, prompt="paid, unsaved")
    sent = len(sandbox.requests())

    done = run("history", "--pending")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "time              id        status   model  cost   sandbox  prompt"
    assert [line.index(" pro ") for line in lines[1:]] == [lines[0].index(" model ")] * 2
    assert [line.split()[2:4] for line in lines[1:]] == [
        [unsaved[:8], "unsaved"],
        [slow[:8], "pending"],
    ]
    listed = run("history", "--pending", "--json")
    assert [json.loads(line)["task_id"] for line in listed.stdout.splitlines()] == [
        unsaved,
        slow,
    ]
    searched = run("history", "--pending", "slow", "--json")
    assert [json.loads(line)["task_id"] for line in searched.stdout.splitlines()] == [slow]
    assert len(sandbox.requests()) == sent


# -- 4. forget -------------------------------------------------------------------------------------


def test_forget_hides_a_row_from_lists_and_bare_resume_but_its_money_counts(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    assert run("config", "--daily-budget", "0.10").returncode == 0
    kept = made(run, "a kept photo")
    waiting = run("generate", "a stuck photo [sandbox:seconds=0.3]", "--async")
    assert waiting.returncode == 0, waiting.stderr
    stuck = waiting.stdout.strip()
    with ledger(api) as history:
        committed = history.committed_cents()
    assert committed == 10
    sent = len(sandbox.requests())

    done = run("history", "forget", stuck[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"task {stuck} (pending) is now hidden from `fluxclaw history` and a bare "
        "`fluxclaw resume`; `fluxclaw history show` still shows it.",
        "its cost still counts: $0.05 toward the daily budget; hiding a task never changes "
        "what was spent.",
        f"it may still become a paid image: `fluxclaw resume {stuck}` finishes it.",
    ]
    assert len(sandbox.requests()) == sent  # hiding is local

    listed = run("history", "--json")
    assert [json.loads(line)["task_id"] for line in listed.stdout.splitlines()] == [kept["task_id"]]
    assert stuck[:8] not in run("history").stdout
    assert run("history", "--pending").stdout == ""
    bare = run("resume")
    assert bare.returncode == 0, bare.stderr
    assert bare.stderr == "nothing to resume: every task in the history has ended\n"
    assert len(sandbox.requests()) == sent

    # The money: the same cents committed, and the daily cap still counts the hidden task.
    with ledger(api) as history:
        assert history.committed_cents() == committed
    refused = run("generate", "one too many")
    assert refused.returncode == contract.EXIT_BUDGET, refused.stderr
    assert "today's budget of $0.10" in one_line_error(refused.stderr)

    shown = json.loads(run("history", "show", stuck, "--json").stdout)
    assert shown["hidden"] is True and shown["status"] == "pending"

    # Still finished when asked by its id (a prefix will do).
    finished = run("resume", stuck[:10], "--json")
    assert finished.returncode == 0, finished.stderr
    assert Path(json.loads(finished.stdout)["paths"][0]).is_file()

    again = run("history", "forget", stuck)
    assert again.returncode == 0, again.stderr
    assert f"task {stuck} (completed) was already hidden" in again.stderr


def test_a_hidden_row_still_counts_in_its_batch(run: Run, api: dict[str, str]) -> None:
    paid = str(uuid.uuid4())
    put(api, paid, key=str(uuid.uuid4()), cost=0.05, batch="b1", identity="row-1")
    put(api, str(uuid.uuid4()), key=str(uuid.uuid4()), cost=0.14, batch="b1", identity="row-2")
    with ledger(api) as history:
        before = (
            history.committed_cents(batch="b1"),
            history.charged_cents(batch="b1"),
            [entry.task_id for entry in history.in_batch("b1", "row-1")],
        )
    done = run("history", "forget", paid)
    assert done.returncode == 0, done.stderr
    assert "$0.05 toward the daily budget and its batch's budget" in done.stderr
    with ledger(api) as history:
        after = (
            history.committed_cents(batch="b1"),
            history.charged_cents(batch="b1"),
            [entry.task_id for entry in history.in_batch("b1", "row-1")],
        )
        assert [entry.hidden for entry in history.in_batch("b1", "row-1")] == [True]
    assert after == before == (19, 19, [paid])


def test_forget_of_an_unknown_id_changes_nothing(run: Run, api: dict[str, str]) -> None:
    put(api, str(uuid.uuid4()), key=str(uuid.uuid4()))
    done = run("history", "forget", "0000000")
    assert done.returncode == contract.EXIT_INVALID
    assert "'0000000'" in one_line_error(done.stderr)
    assert [row["hidden"] for row in history_rows(api)] == [0]


# -- 5. short id prefixes --------------------------------------------------------------------------


def test_a_unique_prefix_works_for_status_wait_resume_and_show(
    run: Run, api: dict[str, str]
) -> None:
    waiting = run("generate", "a paper boat [sandbox:seconds=0.2]", "--async")
    assert waiting.returncode == 0, waiting.stderr
    task_id = waiting.stdout.strip()
    prefix = task_id[:6]

    status = run("status", prefix, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["task_id"] == task_id
    waited = run("wait", prefix.upper(), "--json", "-o", "waited/")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["task_id"] == task_id
    resumed = run("resume", task_id[:13], "--json")  # with its dash
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["paths"] == json.loads(waited.stdout)["paths"]
    shown = run("history", "show", prefix, "--json")
    assert json.loads(shown.stdout)["task_id"] == task_id
    assert len(history_rows(api)) == 1


def test_an_idempotency_key_prefix_names_its_row(run: Run, api: dict[str, str]) -> None:
    key = "feedface-0000-4000-8000-" + uuid.uuid4().hex[:12]
    put(api, None, key=key, status="unanswered", prompt="a create with no answer")
    done = run("history", "show", "feedface", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["idempotency_key"] == key and found["task_id"] is None
    listed = run("history").stdout.splitlines()
    assert listed[1].split()[2:4] == ["feedface", "unanswered"]


def test_an_ambiguous_prefix_is_one_error_listing_the_candidates(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    first = "abcdef01-0000-4000-8000-000000000001"
    second = "abcdef02-0000-4000-8000-000000000002"
    put(api, first, key=str(uuid.uuid4()), base_url=sandbox.base_url)
    put(api, second, key=str(uuid.uuid4()), status="pending", base_url=sandbox.base_url)
    for args in (
        ["wait", "abcdef"],
        ["status", "abcdef"],
        ["resume", "abcdef"],
        ["history", "show", "ABCDEF"],
        ["history", "forget", "abcdef"],
    ):
        done = run(*args)
        assert done.returncode == contract.EXIT_INVALID, (args, done.stderr)
        line = one_line_error(done.stderr)
        assert first in line and second in line, line
        assert "(completed)" in line and "(pending)" in line
        assert "give more of it" in line
        assert "Traceback" not in done.stderr
    assert sandbox.requests() == []
    assert [row["hidden"] for row in history_rows(api)] == [0, 0]


def test_an_unknown_prefix_is_an_error_before_any_request_or_key(
    run: Run, cli_env: dict[str, str], api: dict[str, str], sandbox: Any
) -> None:
    put(api, str(uuid.uuid4()), key=str(uuid.uuid4()))
    for ref in ("123456", "12345", "not-a-task", "0123456789abcdef"):
        for args in (["wait", ref], ["status", ref], ["resume", ref], ["history", "show", ref]):
            done = run(*args)
            assert done.returncode == contract.EXIT_INVALID, (args, done.stderr)
            line = one_line_error(done.stderr)
            assert f"no task in the history has an id or idempotency key starting with {ref!r}" in (
                line
            )
            assert done.stdout == ""
    short = run("wait", "12345")
    assert "give at least 6 characters of one" in short.stderr
    # Without any key configured, the answer is the same: the ledger decides, not the API.
    no_key = run("wait", "123456", env={"RUNAPI_API_KEY": ""})
    assert no_key.returncode == contract.EXIT_INVALID
    assert "starting with '123456'" in one_line_error(no_key.stderr)
    assert sandbox.requests() == []
    assert len(history_rows(api)) == 1


# -- 6. a wrong id never poisons resume ------------------------------------------------------------


def test_wait_on_an_unknown_task_id_leaves_nothing_for_resume(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    unknown = str(uuid.uuid4())
    done = run("wait", unknown)
    assert done.returncode == contract.EXIT_INVALID, done.stderr
    line = one_line_error(done.stderr)
    assert "404" in line and unknown in line
    assert "may still finish" not in line and "check the id" in line
    assert done.stdout == ""
    assert sandbox.requests()  # it was asked: a whole id may be a task made elsewhere
    assert history_rows(api) == []

    status = run("status", unknown)
    assert status.returncode == contract.EXIT_INVALID
    one_line_error(status.stderr)
    assert history_rows(api) == []

    bare = run("resume")
    assert bare.returncode == 0, bare.stderr
    assert bare.stderr == "nothing to resume: every task in the history has ended\n"


def test_a_row_an_older_wait_left_for_an_unknown_id_ends_as_gone(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    """What a wrong id left before: a row with no key of ours that the API answers 404."""
    unknown = str(uuid.uuid4())
    put(api, unknown, status="error", prompt="", model="", base_url=sandbox.base_url)
    first = run("resume")
    assert first.returncode == contract.EXIT_OTHER  # this once: the API is asked and says 404
    assert unknown in first.stderr and "Traceback" not in first.stderr
    [row] = history_rows(api)
    assert row["status"] == "gone"
    again = run("resume")
    assert again.returncode == 0, again.stderr
    assert again.stderr == "nothing to resume: every task in the history has ended\n"


def test_wait_on_a_task_made_elsewhere_still_records_it(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    import fluxclaw

    with fluxclaw.Client(api_key=KEY, base_url=sandbox.base_url) as client:
        task = client.submit_generate("a lighthouse at dusk [sandbox:seconds=0.2]", model="flex")
    done = run("wait", task.id, "--json")
    assert done.returncode == 0, done.stderr
    [row] = history_rows(api)
    assert row["task_id"] == task.id and row["status"] == "completed"
