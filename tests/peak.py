"""Running the real `fluxclaw` CLI in a fresh interpreter that reports its own peak memory.

ru_maxrss of a child includes the parent's peak from before exec; VmHWM read by the child
itself at exit does not. Shared by the reliability tests and bench/batch.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python -c LAUNCH ARGS...` runs `fluxclaw ARGS...` and writes VmHWM (kB) to $PEAK_FILE at exit.
LAUNCH = (
    "import atexit, os, pathlib, sys\n"
    "def peak():\n"
    "    status = pathlib.Path('/proc/self/status').read_text().splitlines()\n"
    "    hwm = next(l for l in status if l.startswith('VmHWM:')).split()[1]\n"
    "    pathlib.Path(os.environ['PEAK_FILE']).write_text(hwm)\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'fluxclaw'\n"
    "from fluxclaw.cli.main import main\n"
    "main()\n"
)


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, *args]


def peak_mb(peak_file: Path) -> float:
    return int(peak_file.read_text()) / 1024
