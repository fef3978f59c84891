"""Options: `--soak` runs the 2,000-generation soak (the normal run makes 300), and
`--write-reliability` writes docs/reliability.md from this run's counts."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pytest

from tests.reliability import report

DOC = Path(__file__).parents[2] / "docs" / "reliability.md"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fluxclaw reliability")
    group.addoption("--soak", action="store_true", help="run the 2,000-generation fault soak")
    group.addoption("--write-reliability", action="store_true", help="write docs/reliability.md")


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
    command = f".venv/bin/python -m pytest {shlex.join(args)}"
    DOC.write_text(report.render(command, _machine()))


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
