"""CLI tests run `fluxclaw` as a real subprocess, with an isolated home, config and history."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-cli-SECRET-7f3a9c"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(cli_env: dict[str, str], tmp_path: Path) -> Run:
    work = tmp_path / "work"
    work.mkdir()

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLUXCLAW, *args],
            input=input,
            capture_output=True,
            text=True,
            env={**cli_env, **(env or {})},
            cwd=work,
            timeout=timeout,
        )

    return run


def interruptible() -> None:
    """Run in a child before exec: Ctrl-C reaches it as it would from a terminal, whatever the
    runner's own signal state (a runner started in the background ignores SIGINT, a thread may
    block it, and children inherit both)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def one_line_error(stderr: str) -> str:
    """The error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def args_list(values: Sequence[str]) -> list[str]:
    return list(values)


@pytest.fixture
def sandbox(fluxclaw_sandbox_factory: Any) -> Any:
    return fluxclaw_sandbox_factory(api_key=KEY)


@pytest.fixture
def api(sandbox: Any, cli_env: dict[str, str]) -> dict[str, str]:
    """Environment that points the CLI at the sandbox, with the poll schedule scaled to it."""
    cli_env.update(RUNAPI_API_KEY=KEY, RUNAPI_BASE_URL=sandbox.base_url, FLUXCLAW_TIME_SCALE="0.01")
    return cli_env


def history_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every history row (none when no history file was ever written)."""
    path = Path(env["FLUXCLAW_DATA_DIR"]) / "history.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM tasks ORDER BY id")]


def read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
    return seen


def recording_viewer(folder: Path) -> tuple[dict[str, str], Path]:
    """An `xdg-open` of the test's own, first on PATH, that records each file it is given:
    --open's viewer, replaced. Returns the environment to run with and the record."""
    opener = folder / "bin" / "xdg-open"
    opener.parent.mkdir(exist_ok=True)
    opened = folder / "opened.txt"
    opener.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    opener.chmod(0o755)
    return {"PATH": f"{opener.parent}:/usr/bin:/bin"}, opened
