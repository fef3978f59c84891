"""Batch at scale: `fluxclaw batch` with 1,000 rows at concurrency 100 against the sandbox, its
wall time against the ideal, with polling and with callbacks.

Every row's duration is pinned by `[sandbox:seconds=N]` (seeded draws), so the ideal is exact:
the zero-lag schedule of the same durations, in row order, on the same number of slots (each
row starts the moment a slot frees). Goals: at most 1.08 x the ideal with polling, 1.03 with
`--callback-url`, and peak memory under 200 MB.

    .venv/bin/python bench/batch.py --write
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import peak

import docfile

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))


def durations(rows: int, seed: int) -> list[float]:
    """Seconds per row: 4 to 10 s, like Pro and Flex at 1k and 2k."""
    chance = random.Random(seed)
    return [round(chance.uniform(4.0, 10.0), 1) for _ in range(rows)]


def ideal(times: list[float], slots: int) -> float:
    """Makespan of the zero-lag list schedule in row order."""
    free = [0.0] * slots
    for seconds in times:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
    return max(free)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(times: list[float], concurrency: int, callbacks: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        sandbox = subprocess.Popen(
            [FLUXCLAW, "sandbox", "--speed", "1", "--balance", "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sandbox.stdout is not None
        base = sandbox.stdout.readline().strip()
        try:
            rows = "".join(
                json.dumps({"prompt": f"catalog item {i} [sandbox:seconds={s}]"}) + "\n"
                for i, s in enumerate(times)
            )
            (work / "rows.jsonl").write_text(rows)
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))
            }
            env |= {
                "RUNAPI_API_KEY": "sk-bench",
                "FLUXCLAW_DATA_DIR": str(work / "data"),
                "FLUXCLAW_CONFIG": str(work / "config.json"),
                "PEAK_FILE": str(work / "peak"),
            }
            args = peak.command("batch", "rows.jsonl", "-o", "out")
            args += ["-c", str(concurrency), "--base-url", base, "--json"]
            if callbacks:
                args += ["--callback-url", f"http://127.0.0.1:{free_port()}"]
            started, launched = time.perf_counter(), time.time()
            done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            ended = time.time()
            tasks = httpx.get(f"{base}/_sandbox/tasks", trust_env=False, timeout=60).json()
            created = sorted(t["created_at"] for t in tasks["tasks"])
            finished = sorted(t["finished_at"] for t in tasks["tasks"])
            # Row i+slots can start when the i-th task ends: the gap is the hand-off.
            gaps = [c - f for c, f in zip(created[concurrency:], finished, strict=False)]
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            summary = json.loads(done.stdout)
            assert summary["done"] == len(times), summary
            peak_mb = peak.peak_mb(work / "peak")
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=10)
    return {
        "wall": wall,
        "peak_mb": peak_mb,
        # Where the time beyond the ideal went: before the first create, on the server (the
        # schedule's hand-offs), and after the last task ended (saves, manifest, gallery).
        "start": min(created) - launched,
        "server": max(finished) - min(created),
        "tail": ended - max(finished),
        "handoff_ms": 1000 * statistics.median(gaps) if gaps else 0.0,
        "handoff_p95_ms": 1000 * sorted(gaps)[int(len(gaps) * 0.95)] if gaps else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args()
    times = durations(args.rows, args.seed)
    best = ideal(times, args.concurrency)
    lines: list[str] = []
    spans: list[str] = []
    results = {}
    for callbacks, goal in ((False, 1.08), (True, 1.03)):
        result = run(times, args.concurrency, callbacks)
        ratio = result["wall"] / best
        results[callbacks] = (ratio, goal, result)
        mode = "--callback-url" if callbacks else "polling"
        lines.append(
            f"| {mode} | {result['wall']:.1f} s | {best:.1f} s | {ratio:.3f} | {goal} "
            f"| {'met' if ratio <= goal else '**missed**'} | {result['peak_mb']:.0f} MB |"
        )
        print(lines[-1], flush=True)
        spans.append(
            f"| {mode} | {result['start']:.2f} s | {result['server']:.1f} s "
            f"({result['server'] / best:.3f} x ideal) | {result['tail']:.2f} s "
            f"| {result['handoff_ms']:.0f} / {result['handoff_p95_ms']:.0f} ms |"
        )
    memory = all(r[2]["peak_mb"] < 200 for r in results.values())
    text = f"""## Batch at scale

`fluxclaw batch` with {args.rows} rows at concurrency {args.concurrency} against
`fluxclaw sandbox --speed 1`; each row's duration is pinned with `[sandbox:seconds=N]` (4 to 10 s,
seed {args.seed}), so the ideal is exact: the zero-lag schedule of the same durations in row order
on {args.concurrency} slots. Wall time includes the CLI's start, every create, wait, download,
atomic save and thumbnail, the journal, and the manifest and gallery at the end. Peak memory is
the batch process's own VmHWM. Machine: {docfile.machine()}.

| mode | wall | ideal | wall / ideal | goal | | peak memory |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Peak memory under 200 MB: {"met" if memory else "**missed**"}.

Where the time beyond the ideal went (sandbox clock): before the first create (process start,
reading and checking the rows), between the first create and the last task's end (hand-offs
from one row to the next), and after it (the last saves, the manifest and the gallery):

| mode | before 1st create | 1st create to last end | after last end | hand-off p50 / p95 |
|---|---|---|---|---|
{chr(10).join(spans)}

Command:

```sh
.venv/bin/python bench/batch.py --write
```
"""
    print(text)
    if args.write:
        docfile.record("Batch at scale", text)


if __name__ == "__main__":
    main()
