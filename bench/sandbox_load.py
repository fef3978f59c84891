"""How many task status requests per second one sandbox process serves.

Starts `fluxclaw sandbox` as a subprocess pinned to one core (taskset), creates some tasks (half
finished, half still running), then hammers `GET /api/v1/flux_2/text_to_image/{id}` from this
process pinned to another core, over keep-alive connections with pre-built request bytes so that
the load generator is not the bottleneck. Prints requests/second and, with --write, records the
figure and the command in docs/benchmarks.md.

    .venv/bin/python bench/sandbox_load.py --seconds 10 --connections 32 --write
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docfile

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench"


def start_sandbox(server_core: int) -> tuple[subprocess.Popen[str], str]:
    fluxclaw = Path(sys.executable).with_name("fluxclaw")
    command = [str(fluxclaw), "sandbox", "--port", "0", "--api-key", KEY, "--seed", "0"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(server_core), *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise SystemExit(f"the sandbox did not print its URL (got {line!r})")
    return process, line


def make_tasks(base: str, count: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for i in range(count):
            # Half finish at once, half stay pending/processing for the whole run.
            seconds = 0 if i % 2 else 3600
            body = {
                "model": "flux-2-pro-text-to-image",
                "prompt": f"bench {i} [sandbox:seconds={seconds}]",
            }
            answer = http.post("/api/v1/flux_2/text_to_image", json=body)
            answer.raise_for_status()
            ids.append(answer.json()["id"])
    return ids


async def worker(
    host: str,
    port: int,
    requests: list[bytes],
    stop_at: float,
    measure_from: float,
    latencies: list[float],
    counts: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    try:
        while True:
            now = clock()
            if now >= stop_at:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if match is None:
                raise RuntimeError(f"no content-length in {head!r}")
            await reader.readexactly(int(match.group(1)))
            done = clock()
            if now >= measure_from:
                counts[0] += 1
                if not head.startswith(b"HTTP/1.1 200"):
                    counts[1] += 1
                if counts[0] % 16 == 0:
                    latencies.append(done - now)
    finally:
        writer.close()


async def hammer(
    base: str, ids: list[str], connections: int, seconds: float, warmup: float
) -> dict[str, float]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    requests = [
        (
            f"GET /api/v1/flux_2/text_to_image/{task_id} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            "Accept: application/json\r\nUser-Agent: fluxclaw-bench\r\n\r\n"
        ).encode()
        for task_id in ids
    ]
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    latencies: list[float] = []
    counts = [0, 0]
    await asyncio.gather(
        *(
            worker(host, int(port), requests, stop_at, measure_from, latencies, counts)
            for _ in range(connections)
        )
    )
    latencies.sort()
    return {
        "requests": counts[0],
        "errors": counts[1],
        "rps": counts[0] / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_doc(
    result: dict[str, float], command: str, server_cpu: float, args: argparse.Namespace
) -> None:
    section = f"""## Sandbox throughput

One `fluxclaw sandbox` process (uvicorn + httptools + uvloop) pinned to one core with
`taskset -c {args.server_core}`, answering `GET /api/v1/flux_2/text_to_image/{{id}}` for
{args.tasks} tasks (half completed, half still running) over {args.connections} keep-alive
connections from a raw-asyncio load generator pinned to core {args.client_core}.

| measure | value |
|---|---|
| status requests per second | **{result["rps"]:,.0f}** |
| requests in {args.seconds:g} s (after {args.warmup:g} s warm-up) | {result["requests"]:,.0f} |
| non-200 answers | {result["errors"]:,.0f} |
| median latency | {result["p50_ms"]:.1f} ms |
| p99 latency | {result["p99_ms"]:.1f} ms |
| sandbox CPU use during the run | {server_cpu:.0%} of one core |

Goal: at least 3,000 per second on one core. Machine: {docfile.machine()}.

Command:

```sh
{command}
```
"""
    docfile.record("Sandbox throughput", section)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument(
        "--write", action="store_true", help="record the result in docs/benchmarks.md"
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {args.client_core})
    process, base = start_sandbox(args.server_core)
    try:
        ids = make_tasks(base, args.tasks)
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run
        cpu_before = server_cpu_seconds(process.pid)
        started = time.monotonic()
        result = runner(hammer(base, ids, args.connections, args.seconds, args.warmup))
        server_cpu = (server_cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - started)
    finally:
        process.terminate()
        process.wait(10)
    print(
        f"{result['rps']:,.0f} status requests/s "
        f"({result['requests']:,.0f} in {args.seconds:g} s, {result['errors']:,.0f} non-200; "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
        f"sandbox CPU {server_cpu:.0%} of one core)"
    )
    if args.write:
        command = " ".join([".venv/bin/python bench/sandbox_load.py", *sys.argv[1:]])
        write_doc(result, command, server_cpu, args)
        print(f"recorded in {docfile.DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
