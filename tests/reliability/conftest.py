"""Options: `--soak` runs the 2,000-generation soak (the normal run makes 300), and
`--write-reliability` writes docs/reliability.md from this run's counts."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import report

DOC = Path(__file__).parents[2] / "docs" / "reliability.md"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fluxclaw reliability")
    group.addoption("--soak", action="store_true", help="run the 2,000-generation fault soak")
    group.addoption("--write-reliability", action="store_true", help="write docs/reliability.md")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "round2(area): a round-2 hostile case, counted by area")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A round-2 case is recorded as kept or broken by its own outcome."""
    outcome = yield
    marker = item.get_closest_marker("round2")
    if marker is not None and outcome.when == "call":
        broken = [] if outcome.passed else [str(outcome.longrepr).splitlines()[-1][:200]]
        report.record(f"round 2: {marker.args[0]}", _case(item), broken)
    return outcome


def _case(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or item.name
    name = " ".join(doc.split())
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--write-reliability", default=False) or not report.RESULTS:
        return
    argv, args = sys.argv[1:], []
    while argv:
        arg = argv.pop(0)
        if arg == "-p" and argv:  # plugin switches say nothing about the run
            argv.pop(0)
        elif not arg.startswith("-p"):
            args.append(arg)
    command = f".venv/bin/python -m pytest {' '.join(args)}"
    DOC.write_text(report.render(command, _machine()))


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
