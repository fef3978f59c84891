"""Round 2, broken state: a history, journal, data folder or config that cannot be used is one
error naming the file (exit 1 or 4, never an internal error) through every door, before
anything is paid; a history that fills the disk right after a create still names the task and
how to finish it; and every state file, -wal and -shm included, is the owner's alone."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import AsyncClient, Client, contract, errors
from fluxclaw.batch import RowFile, run_batch
from tests.reliability.round2 import FLUXCLAW, KEY, cli, env_for, mcp, mcp_start, one_error

ROWS = '{"prompt": "a red lamp on a desk"}\n{"prompt": "a blue teapot"}\n'


def _creates(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST")


def _corrupt_history(env: dict[str, str], root: Path) -> str:
    path = Path(env["FLUXCLAW_DATA_DIR"]) / "history.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(9000))
    return str(path)


def _data_dir_is_a_file(env: dict[str, str], root: Path) -> str:
    blocker = root / "not-a-folder"
    blocker.write_text("a file where fluxclaw's data folder should be")
    env["FLUXCLAW_DATA_DIR"] = str(blocker / "data")
    return str(blocker / "data" / "history.sqlite")


def _corrupt_journal(env: dict[str, str], root: Path) -> str:
    journal = root / "work" / "out" / ".fluxclaw" / "journal.sqlite"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    return str(journal)


BREAKS: dict[str, Callable[[dict[str, str], Path], str]] = {
    "corrupt_history": _corrupt_history,
    "data_dir_is_a_file": _data_dir_is_a_file,
    "corrupt_journal": _corrupt_journal,
}
DOORS = ["cli generate", "cli batch", "mcp generate", "library batch"]


@pytest.mark.round2("broken state")
@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("broken", list(BREAKS))
def test_a_broken_state_file_is_named_and_nothing_is_paid(
    broken: str, door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A state file that cannot be used is one error naming it, before anything is sent"""
    if broken == "corrupt_journal" and "batch" not in door:
        pytest.skip("only a batch reads a journal")
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    env = env_for(tmp_path, sandbox.base_url)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "rows.jsonl").write_text(ROWS)
    path = BREAKS[broken](env, tmp_path)
    if door == "cli generate":
        done = cli(tmp_path, env, "generate", "a red lamp", "-o", "out")
        assert done.returncode in (contract.EXIT_OTHER, contract.EXIT_INVALID)
        assert path in one_error(done.stderr)
    elif door == "cli batch":
        done = cli(tmp_path, env, "batch", "rows.jsonl", "-o", "out")
        assert done.returncode in (contract.EXIT_OTHER, contract.EXIT_INVALID)
        assert path in one_error(done.stderr)
    elif door == "mcp generate":
        [(is_error, text)] = mcp(tmp_path, env, [("generate", {"prompt": "a red lamp"})])
        assert is_error and path in text and "Traceback" not in text
    else:
        monkeypatch.setenv("FLUXCLAW_DATA_DIR", env["FLUXCLAW_DATA_DIR"])

        async def go() -> None:
            async with AsyncClient(api_key=KEY, base_url=sandbox.base_url) as client:
                rows = RowFile(tmp_path / "work" / "rows.jsonl")
                await run_batch(client, rows, tmp_path / "work" / "out")

        with pytest.raises(errors.StateFileError, match=path.replace(".", r"\.")):
            asyncio.run(go())
    assert _creates(sandbox) == 0


@pytest.mark.round2("broken state")
@pytest.mark.parametrize("door", ["cli", "mcp"])
def test_a_history_that_fills_the_disk_after_a_create_names_the_task(
    door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A full disk (RLIMIT_FSIZE) before or after a paid create: nothing paid, or the task id
    and `fluxclaw resume ID`; the resume then saves the image, one charge"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    paid_but_unrecorded: list[str] = []
    for limit in range(60_000, 160_001, 10_000):  # the history's own files cross these sizes
        root = tmp_path / str(limit)
        env = env_for(root, sandbox.base_url)
        before = len(sandbox.ledger()["charges"])

        def cap(limit: int = limit) -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        if door == "cli":
            done = cli(root, env, "generate", "a red lamp", "-o", "out", preexec_fn=cap)
            said, ok = done.stdout + done.stderr, done.returncode == 0
            if not ok:
                one_error(done.stderr)
        else:
            said, ok = _mcp_capped(root, env, limit)
        charged = len(sandbox.ledger()["charges"]) - before
        assert "Traceback" not in said and "internal error" not in said, said[-2000:]
        if ok:
            continue
        if charged:
            task_id = sandbox.tasks()[-1]["id"]
            assert task_id in said and f"fluxclaw resume {task_id}" in said, said[-2000:]
            paid_but_unrecorded.append(task_id)
            resumed = cli(root, env, "resume", task_id, "-o", "saved")
            assert resumed.returncode == 0, resumed.stderr
            assert list((root / "work" / "saved").glob("*.png"))
        else:
            assert "history" in said
    assert paid_but_unrecorded, "no limit fell between the record and the update"
    assert len(sandbox.ledger()["charges"]) == len(sandbox.tasks())


def _mcp_capped(root: Path, env: dict[str, str], limit: int) -> tuple[str, bool]:
    """One MCP generate from a server whose files may not grow past `limit` bytes."""
    wrapper = root / "capped.py"
    root.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "import os, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        f"os.execv({FLUXCLAW!r}, [{FLUXCLAW!r}, *sys.argv[1:]])\n"
    )
    import sys

    answers = _mcp_with(root, env, [sys.executable, str(wrapper)])
    is_error, text = answers[0]
    return text, not is_error


def _mcp_with(root: Path, env: dict[str, str], command: list[str]) -> list[tuple[bool, str]]:
    import anyio
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.types import TextContent

    from mcp import ClientSession

    answers: list[tuple[bool, str]] = []
    (root / "work").mkdir(parents=True, exist_ok=True)

    async def drive() -> None:
        params = StdioServerParameters(
            command=command[0],
            args=[*command[1:], "mcp", "--output-dir", str(root / "out")],
            env=env,
            cwd=root / "work",
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            with anyio.fail_after(60):
                answer = await session.call_tool("generate", {"prompt": "a red lamp"})
            text = "\n".join(b.text for b in answer.content if isinstance(b, TextContent))
            answers.append((bool(answer.is_error), text))

    anyio.run(drive)
    return answers


@pytest.mark.round2("broken state")
def test_every_state_file_is_the_owners_alone_while_a_batch_runs(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """The history and its -wal and -shm files are 0600 while a batch runs (umask 022)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, speed=1)
    env = env_for(tmp_path, sandbox.base_url)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "rows.jsonl").write_text(
        '{"prompt": "a slow lamp [sandbox:seconds=30]"}\n'
    )
    data = Path(env["FLUXCLAW_DATA_DIR"])
    proc = subprocess.Popen(
        [FLUXCLAW, "batch", "rows.jsonl", "-o", "out"],
        cwd=tmp_path / "work",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        deadline = time.monotonic() + 30
        while not sandbox.tasks() or not (data / "history.sqlite-wal").exists():
            assert time.monotonic() < deadline, "the batch never started its task"
            assert proc.poll() is None
            time.sleep(0.05)
        files = sorted(p for p in data.rglob("*") if p.is_file())
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        assert {"history.sqlite", "history.sqlite-wal", "history.sqlite-shm"} <= set(modes)
        assert set(modes.values()) == {"0o600"}, modes
    finally:
        proc.kill()
        proc.wait()


def _unparsable(config: Path) -> str:
    config.write_text("{ this is not json")
    return "fix it, or remove it"


def _writable_by_others(config: Path) -> str:
    config.write_text(json.dumps({"base_url": "https://evil.example"}))
    config.chmod(0o666)
    return f"chmod 600 {config}"


def _owned_by_another(config: Path) -> str:
    if os.getuid() != 0:
        pytest.skip("only root can hand a file to another user")
    config.write_text(json.dumps({"base_url": "https://evil.example"}))
    config.chmod(0o600)
    os.chown(config, 65534, 65534)
    return "belongs to another user"


CONFIGS: dict[str, Callable[[Path], str]] = {
    "unparsable": _unparsable,
    "writable_by_others": _writable_by_others,
    "owned_by_another": _owned_by_another,
}


@pytest.mark.round2("broken state")
@pytest.mark.parametrize("door", ["cli", "mcp", "library"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_a_config_file_that_cannot_be_trusted_is_refused_with_its_path(
    kind: str, door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A config file that does not parse, or that others own or can write, is refused with
    its path, never read as empty (its base_url would take the key elsewhere)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    env = env_for(tmp_path, sandbox.base_url)
    env.pop("RUNAPI_BASE_URL")  # the config file's base_url would be the one used
    config = Path(env["FLUXCLAW_CONFIG"])
    config.parent.mkdir(parents=True)
    says = CONFIGS[kind](config)
    if door == "cli":
        done = cli(tmp_path, env, "generate", "a red lamp", "-o", "out")
        assert done.returncode == contract.EXIT_INVALID
        line = one_error(done.stderr)
        assert str(config) in line and says in line
    elif door == "mcp":
        done = mcp_start(tmp_path, env)
        assert done.returncode == contract.EXIT_INVALID
        line = one_error(done.stderr)
        assert str(config) in line and says in line
    else:
        monkeypatch.setenv("FLUXCLAW_CONFIG", str(config))
        monkeypatch.setenv("RUNAPI_API_KEY", KEY)
        with pytest.raises(errors.ValidationError, match=str(config).replace(".", r"\.")):
            Client()
    assert sandbox.requests() == []
