"""Fixtures shared by the CLI and OpenClaw tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        FLUXCLAW_CONFIG=str(tmp_path / "config" / "config.json"),
        FLUXCLAW_DATA_DIR=str(tmp_path / "data"),
    )
    return env


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing a test runs in this process reads or writes the user's history or config."""
    monkeypatch.setenv("FLUXCLAW_DATA_DIR", str(tmp_path / "_data"))
    monkeypatch.setenv("FLUXCLAW_CONFIG", str(tmp_path / "_config" / "config.json"))


@pytest.fixture(autouse=True)
def _fresh_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered keys: the registry is process-wide, and under xdist
    a worker runs tests in any order (a one-letter key from another test masks `ftp://x`)."""
    from fluxclaw import redaction

    monkeypatch.setattr(redaction, "_secrets", set())
    monkeypatch.setattr(redaction, "_pattern", None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "round2(area): a round-2 hostile case, counted by area")
    # in docs/reliability.md (tests/reliability/report.py), whichever folder it lives in


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A round-2 case is recorded as kept or broken by its own outcome."""
    outcome = yield
    marker = item.get_closest_marker("round2")
    if marker is not None and outcome.when == "call" and not outcome.skipped:
        broken = [] if outcome.passed else [str(outcome.longrepr).splitlines()[-1][:200]]
        from tests.reliability import report

        report.record(f"round 2: {marker.args[0]}", _case(item), broken)
    return outcome


def _case(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or item.name
    name = " ".join(doc.split())
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name
