"""Round 2, batch files: a hostile row is one bad row with its true line number, through the CLI
and the library; a hostile file is one clear error; any file is read in bounded memory."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import AsyncClient, contract
from fluxclaw.batch import BadFile, RowFile, plan_batch, run_batch
from fluxclaw.history import History
from tests.peak import command as peak_command
from tests.peak import peak_mb
from tests.reliability.round2 import KEY, cli, env_for, one_error

MEMORY_MB = 300
GOOD = ["a red lamp on a desk", "a blue teapot", "a green chair"]


def _jsonl(bad_line: str) -> str:
    """Good rows on lines 1, 3 and 4, the hostile one on line 2."""
    rows = [json.dumps({"prompt": p}) for p in GOOD]
    return "\n".join([rows[0], bad_line, rows[1], rows[2]]) + "\n"


def _csv(bad_prompt: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([["prompt"], [GOOD[0]], [bad_prompt], [GOOD[1]], [GOOD[2]]])
    return out.getvalue()


# name -> (file name, text, line of the bad row or None, what its error says)
FILES: dict[str, tuple[str, str, int | None, str]] = {
    "nested_json": (
        "rows.jsonl",
        _jsonl('{"prompt": "x", "model": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        2,
        "nested more than 32",
    ),
    # U+2028 inside a string is not a line end: four rows, their own line numbers, none bad.
    "u2028_in_a_string": (
        "rows.jsonl",
        _jsonl(json.dumps({"prompt": "a lamp\u2028on a desk"}, ensure_ascii=False)),
        None,
        "",
    ),
    "csv_cell_over_131072": ("rows.csv", _csv("x" * 200_000), 3, "characters"),
    "csv_nul_in_a_prompt": ("rows.csv", _csv("a lamp\x00on a desk"), 3, "control characters"),
}


def _creates(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST")


def _check_manifest(out: Path, bad_line: int | None, says: str) -> None:
    lines = [json.loads(t) for t in (out / "manifest.jsonl").read_text().splitlines()]
    numbers = [line["line"] for line in lines]
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))
    bad = [line for line in lines if line["status"] == "invalid"]
    assert [b["line"] for b in bad] == ([bad_line] if bad_line else [])
    assert all(says in b["error"] for b in bad)
    done = [line for line in lines if line["status"] == "done"]
    assert len(done) == (3 if bad_line else 4)
    assert all(Path(line["path"]).is_file() for line in done)


@pytest.mark.round2("batch files")
@pytest.mark.parametrize("name", list(FILES))
def test_a_hostile_row_is_one_bad_row_through_the_cli(
    name: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """One hostile row is one bad row with its true line; the rest are made (CLI)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    file_name, text, bad_line, says = FILES[name]
    rows = tmp_path / "work" / file_name
    rows.parent.mkdir(parents=True)
    rows.write_text(text, encoding="utf-8")
    done = cli(tmp_path, env_for(tmp_path, sandbox.base_url), "batch", file_name, "-o", "out")
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert done.returncode == (contract.EXIT_OTHER if bad_line else 0), done.stderr
    if bad_line:
        assert f"line {bad_line}: " in done.stderr
    _check_manifest(tmp_path / "work" / "out", bad_line, says)
    assert _creates(sandbox) == (3 if bad_line else 4)


@pytest.mark.round2("batch files")
@pytest.mark.parametrize("name", list(FILES))
def test_a_hostile_row_is_one_bad_row_through_the_library(
    name: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """One hostile row is one bad row with its true line; the rest are made (run_batch)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    file_name, text, bad_line, says = FILES[name]
    rows = tmp_path / file_name
    rows.write_text(text, encoding="utf-8")

    async def go() -> Any:
        async with AsyncClient(api_key=KEY, base_url=sandbox.base_url) as client:
            return await run_batch(client, RowFile(rows), tmp_path / "out")

    result = asyncio.run(go())
    assert result.bad_count == (1 if bad_line else 0)
    _check_manifest(tmp_path / "out", bad_line, says)
    assert _creates(sandbox) == (3 if bad_line else 4)


@pytest.mark.round2("batch files")
def test_a_file_of_only_bad_rows_exits_4_and_sends_nothing(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A file whose every row is invalid exits 4 and sends nothing (CLI)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = tmp_path / "work" / "rows.jsonl"
    rows.parent.mkdir(parents=True)
    rows.write_text('{"prompt": "x"}\n{"promt": "a lamp"}\nnot json\n')
    done = cli(tmp_path, env_for(tmp_path, sandbox.base_url), "batch", "rows.jsonl", "-o", "out")
    assert done.returncode == contract.EXIT_INVALID
    assert "no row of" in one_error(done.stderr)
    assert [f"line {n}:" in done.stderr for n in (1, 2, 3)] == [True] * 3
    assert _creates(sandbox) == 0


def _dev_zero() -> Path:
    return Path("/dev/zero")


def _no_line_ends(tmp: Path) -> Path:
    path = tmp / "one-line.jsonl"
    path.write_bytes(b'{"prompt": "' + b"a" * (3 * 1024 * 1024))
    return path


@pytest.mark.round2("batch files")
@pytest.mark.parametrize("make", [_dev_zero, _no_line_ends], ids=["dev_zero", "no_line_ends"])
def test_an_endless_line_is_one_clear_error_in_bounded_memory(
    make: Callable[..., Path], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """/dev/zero, or a file with no line end, refuses the file: exit 4, little memory (CLI)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    source = make() if make is _dev_zero else make(tmp_path)
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        env = {**env_for(tmp_path, sandbox.base_url), "PEAK_FILE": str(peak)}
        done = subprocess.run(
            peak_command("batch", str(source), "-o", str(tmp_path / "out")),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert peak_mb(peak) < MEMORY_MB
    assert done.returncode == contract.EXIT_INVALID
    assert "longer than 1024 KiB" in one_error(done.stderr)
    assert _creates(sandbox) == 0


@pytest.mark.round2("batch files")
def test_the_library_refuses_an_endless_line_with_bad_file(tmp_path: Path) -> None:
    """/dev/zero given to plan_batch raises BadFile, having read at most a line (library)"""

    async def go() -> None:
        async with AsyncClient(api_key=KEY, base_url="http://127.0.0.1:9") as client:
            plan_batch(client, RowFile(Path("/dev/zero")), tmp_path / "out", History())

    with pytest.raises(BadFile, match="longer than 1024 KiB"):
        asyncio.run(go())


def _big_file(path: Path, megabytes: int) -> int:
    """A batch file of about `megabytes` MB of valid rows of 4,000 characters; its rows."""
    size = rows = 0
    with path.open("w") as handle:
        while size < megabytes * 1024 * 1024:
            line = json.dumps({"prompt": f"row {rows} " + "lamp " * 800}) + "\n"
            handle.write(line)
            size += len(line)
            rows += 1
    return rows


@pytest.mark.round2("batch files")
def test_a_200_mb_file_is_planned_in_bounded_memory(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A 200 MB batch file (52,000 rows) is planned and listed under 300 MB peak (CLI)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    path = tmp_path / "big.jsonl"
    rows = _big_file(path, 200)
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        env = {**env_for(tmp_path, sandbox.base_url), "PEAK_FILE": str(peak)}
        done = subprocess.run(
            peak_command("batch", str(path), "-o", str(tmp_path / "out"), "--dry-run", "--json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        used = peak_mb(peak)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    assert (len(plan["rows"]), plan["new"], plan["bad"]) == (rows, rows, 0)
    assert used < MEMORY_MB, used
    assert _creates(sandbox) == 0
