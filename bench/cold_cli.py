"""Cold CLI calls: does a fresh `fluxclaw generate` poll like a warm client?

Each call is a new process (what an OpenClaw `exec` runs), against `fluxclaw sandbox --speed 10`
with no FLUXCLAW_TIME_SCALE. With the history on, the generation times earlier calls learned are
loaded from it; with --no-history every call starts from the contract's typical times. Goal: after
five earlier calls, a call's wall time is at most 2 x (its generation time) + 0.5 s.

    .venv/bin/python bench/cold_cli.py --sessions 5 --write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docfile

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
SPEED = 10
CALLS = 6  # five earlier calls, then the one the goal is about


def call(env: dict[str, str], cwd: Path, history: bool) -> tuple[float, str]:
    args = [FLUXCLAW, "generate", "a ceramic vase on linen", "--json", "-o", "out/"]
    if not history:
        args.append("--no-history")
    start = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)["task_id"]


def session(base: str, history: bool) -> list[tuple[float, float]]:
    """(wall, generation) seconds of each of CALLS fresh calls with a fresh data folder."""
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
        env |= {
            "RUNAPI_API_KEY": "sk-bench",
            "RUNAPI_BASE_URL": base,
            "FLUXCLAW_DATA_DIR": str(Path(folder) / "data"),
            "FLUXCLAW_CONFIG": str(Path(folder) / "config.json"),
        }
        out = []
        for _ in range(CALLS):
            wall, task_id = call(env, Path(folder), history)
            task = httpx.get(f"{base}/_sandbox/tasks", trust_env=False).json()["tasks"]
            [found] = [t for t in task if t["id"] == task_id]
            out.append((wall, found["finished_at"] - found["started_at"]))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args()
    sandbox = subprocess.Popen(
        [FLUXCLAW, "sandbox", "--speed", str(SPEED)], stdout=subprocess.PIPE, text=True
    )
    assert sandbox.stdout is not None
    base = sandbox.stdout.readline().strip()
    rows = []
    sixth: dict[bool, list[tuple[float, float]]] = {}
    try:
        for history in (True, False):
            runs = [session(base, history) for _ in range(args.sessions)]
            sixth[history] = [run[-1] for run in runs]
            for index in range(CALLS):
                walls = [run[index][0] for run in runs]
                gens = [run[index][1] for run in runs]
                over = [w - (2 * g + 0.5) for w, g in (run[index] for run in runs)]
                rows.append(
                    f"| {'history' if history else '--no-history'} | {index + 1} "
                    f"| {statistics.median(walls):.2f} s | {statistics.median(gens):.2f} s "
                    f"| {statistics.median(w / g for w, g in zip(walls, gens, strict=True)):.2f} "
                    f"| {sum(o <= 0 for o in over)}/{len(over)} |"
                )
                print(rows[-1], flush=True)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    met = all(w <= 2 * g + 0.5 for w, g in sixth[True])
    worst = max(w - 2 * g - 0.5 for w, g in sixth[True])
    verdict = (
        f"Goal {'met' if met else 'missed'}: every sixth call with the history within "
        f"2 x generation + 0.5 s (worst margin {-worst:+.2f} s)."
    )
    print(verdict)
    if args.write:
        table = "\n".join(rows)
        docfile.record(
            "Cold CLI calls",
            f"""## Cold CLI calls

Each call is a new `fluxclaw generate --json` process against `fluxclaw sandbox --speed {SPEED}`
(Pro 1k: about 0.6 s of generation), with no `FLUXCLAW_TIME_SCALE`. A session is {CALLS} calls
with a fresh data folder; {args.sessions} sessions per row, medians shown. With the history,
each call starts from the generation times earlier calls stored in it; with `--no-history`,
every call starts from the contract's typical 6 s, scaled by the speed the sandbox states
on its first answer. Goal: the sixth call's wall time at most
2 x its generation time + 0.5 s. Machine: {docfile.machine()}.

| mode | call | wall | generation | wall / generation | within goal |
|---|---|---|---|---|---|
{table}

{verdict}

Command:

```sh
.venv/bin/python bench/cold_cli.py --sessions {args.sessions} --write
```
""",
        )


if __name__ == "__main__":
    main()
