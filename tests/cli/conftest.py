"""CLI tests run `fluxclaw` as a real subprocess, with an isolated home, config and history."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))

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


def one_line_error(stderr: str) -> str:
    """The error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def args_list(values: Sequence[str]) -> list[str]:
    return list(values)
