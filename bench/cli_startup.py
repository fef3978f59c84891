"""Wall time of `fluxclaw --help` and `fluxclaw --version` (goal: at most 0.25 s each).

Runs each command several times as a real subprocess and reports the median and the worst.

    .venv/bin/python bench/cli_startup.py --runs 20 --write
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docfile

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
COMMANDS = (["--help"], ["--version"], ["generate", "--help"])


def timed(args: list[str], runs: int) -> list[float]:
    subprocess.run([FLUXCLAW, *args], capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([FLUXCLAW, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    for command in COMMANDS:
        times = timed(command, args.runs)
        line = f"`fluxclaw {' '.join(command)}`"
        rows.append(
            f"| {line} | {statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms |"
        )
        print(rows[-1])
    if args.write:
        table = "\n".join(rows)
        docfile.record(
            "CLI start-up",
            f"""## CLI start-up

Wall time of each command as a subprocess, {args.runs} runs after one warm-up run.
Goal: at most 250 ms. Machine: {docfile.machine()}.

| command | median | worst |
|---|---|---|
{table}

Command:

```sh
.venv/bin/python bench/cli_startup.py --runs {args.runs} --write
```
""",
        )


if __name__ == "__main__":
    main()
