"""Client CPU per image: fluxclaw's `AsyncClient` against a bare aiohttp client, in one run.

    .venv/bin/python bench/per_image.py [--images 100] [--concurrency 50] [--profile]

One `fluxclaw sandbox --speed 10` in its own process. Each client runs in its own process, with
its imports done and one warm-up round made before the CPU clock starts, then makes `--images`
Pro 1k images at `--concurrency` at once, keeping all of its promises. The bare client then
sends the same requests at the same moments: the sandbox's log of fluxclaw's round gives each
task's create and status times, and the bare client replays them (a create POST, then each
status GET at its offset from the create, each answer parsed with json.loads; no validation,
deadlines, caps or retries). Same requests, same timing, so the same event-loop wake-ups.

`--profile` runs fluxclaw's worker under cProfile and prints the top entries by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

KEY = "sk-bench-per-image"
MODEL = "flux-2-pro-text-to-image"
SPEED = 10
BARE_INTERVAL = 0.2  # the bare client's warm-up round only


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prompts(n: int, tag: str) -> list[str]:
    return [f"catalog photo {i} of a ceramic mug, studio light ({tag})" for i in range(n)]


async def fluxclaw_round(base: str, n: int, width: int, tag: str) -> None:
    import fluxclaw

    gate = asyncio.Semaphore(width)
    async with fluxclaw.AsyncClient(api_key=KEY, base_url=base) as client:

        async def one(prompt: str) -> None:
            async with gate:
                await client.generate(prompt)

        await asyncio.gather(*(one(p) for p in prompts(n, tag)))


async def bare_replay(base: str, plan: list[tuple[float, list[float]]], tag: str) -> None:
    """fluxclaw's requests, each at the moment fluxclaw sent it (offsets from the round's start
    for creates, from each create for its status requests)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:
        start = loop.time()

        async def one(i: int, created: float, polls: list[float]) -> None:
            await asyncio.sleep(max(0.0, start + created - loop.time()))
            body = {"model": MODEL, "prompt": f"replay {i} ({tag})", "output_resolution": "1k"}
            async with http.post("/api/v1/flux_2/text_to_image", json=body) as made:
                task_id = json.loads(await made.read())["id"]
            for offset in polls:
                await asyncio.sleep(max(0.0, start + created + offset - loop.time()))
                async with http.get(f"/api/v1/flux_2/text_to_image/{task_id}") as answer:
                    json.loads(await answer.read())["status"]

        await asyncio.gather(*(one(i, c, p) for i, (c, p) in enumerate(plan)))


async def bare_round(base: str, n: int, width: int, tag: str) -> None:
    import aiohttp

    gate = asyncio.Semaphore(width)
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=width)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:

        async def one(prompt: str) -> None:
            async with gate:
                body = {"model": MODEL, "prompt": prompt, "output_resolution": "1k"}
                async with http.post("/api/v1/flux_2/text_to_image", json=body) as made:
                    task_id = json.loads(await made.read())["id"]
                while True:
                    await asyncio.sleep(BARE_INTERVAL)
                    async with http.get(f"/api/v1/flux_2/text_to_image/{task_id}") as answer:
                        status = json.loads(await answer.read())["status"]
                    if status in ("completed", "failed"):
                        return

        await asyncio.gather(*(one(p) for p in prompts(n, tag)))


def worker(
    mode: str, base: str, n: int, width: int, profile: bool, plan_file: str | None
) -> dict[str, float]:
    """Runs in its own process: a warm-up round, then the measured one."""
    import aiohttp  # noqa: F401

    import fluxclaw  # noqa: F401

    warm_up = fluxclaw_round if mode == "fluxclaw" else bare_round
    asyncio.run(warm_up(base, 5, 5, "warm-up"))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    before = cpu_seconds()
    if mode == "fluxclaw":
        asyncio.run(fluxclaw_round(base, n, width, "measured"))
    else:
        assert plan_file is not None
        plan = [(c, list(p)) for c, p in json.loads(Path(plan_file).read_text())]
        asyncio.run(bare_replay(base, plan, "measured"))
    spent = cpu_seconds() - before
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("SORT", "tottime")
        ).print_stats(os.environ.get("FILTER", ""), 40)
    return {"cpu_s": spent}


class Sandbox:
    def __init__(self) -> None:
        fluxclaw_bin = Path(sys.executable).with_name("fluxclaw")
        self.proc = subprocess.Popen(
            [
                *(str(fluxclaw_bin), "sandbox", "--port", "0", "--speed", str(SPEED)),
                *("--seed", "7", "--api-key", KEY, "--balance", "1000000"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def reset(self) -> None:
        self.http.post("/_sandbox/reset").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self.http.get("/_sandbox/requests").json()["requests"]
        return log

    def tasks(self) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.http.get("/_sandbox/tasks").json()["tasks"]
        return tasks

    def plan(self) -> list[tuple[float, list[float]]]:
        """The measured round's requests: each task's create (from the first) and status times
        (from its create)."""
        tasks = [t for t in self.tasks() if "(measured)" in t["request"].get("prompt", "")]
        polls: dict[str, list[float]] = {}
        for entry in self.requests():
            if entry["method"] == "GET" and entry["path"].startswith("/api/v1/flux_2/"):
                polls.setdefault(entry["path"].rsplit("/", 1)[-1], []).append(entry["time"])
        first = min(t["created_at"] for t in tasks)
        return [
            (t["created_at"] - first, [at - t["created_at"] for at in sorted(polls[t["id"]])])
            for t in sorted(tasks, key=lambda t: t["created_at"])
        ]

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(
    sandbox: Sandbox,
    mode: str,
    n: int,
    width: int,
    profile: bool = False,
    plan: list[tuple[float, list[float]]] | None = None,
) -> dict[str, Any]:
    """One client's round in its own process; fluxclaw's also returns its plan (its requests'
    times) for the bare client to replay."""
    sandbox.reset()
    with (
        tempfile.NamedTemporaryFile(suffix=".json") as out,
        tempfile.NamedTemporaryFile("w", suffix=".json") as plan_file,
    ):
        json.dump(plan or [], plan_file)
        plan_file.flush()
        cmd = [sys.executable, __file__, "--worker", mode, "--base", sandbox.url]
        cmd += ["--images", str(n), "--concurrency", str(width), "--out", out.name]
        cmd += ["--plan", plan_file.name]
        subprocess.run(cmd + (["--profile"] if profile else []), check=True)
        found: dict[str, Any] = json.loads(Path(out.name).read_text())
    if mode == "fluxclaw":
        found["plan"] = sandbox.plan()
    log = [r for r in sandbox.requests() if r["path"].startswith("/api/v1/flux_2/")]
    found["requests"] = (len(log) - 5 * len(log) / (n + 5)) / n  # the warm-up's share removed
    found["cpu_ms_image"] = 1000 * found["cpu_s"] / n
    found["cpu_ms_request"] = found["cpu_ms_image"] / found["requests"]
    return found


def profile_top(sandbox: Sandbox, n: int, width: int, entries: int = 15) -> str:
    """fluxclaw's worker under cProfile: its top entries by own time, as printed."""
    sandbox.reset()
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--worker", "fluxclaw", "--base", sandbox.url, "--profile"]
        cmd += ["--images", str(n), "--concurrency", str(width), "--out", out.name]
        env = os.environ | {"SORT": "tottime", "FILTER": ""}
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    root = str(Path(__file__).resolve().parents[1]) + "/"
    site = str(Path(aiohttp_file()).parents[1]) + "/"
    return "\n".join(
        line.replace(root, "").replace(site, "") for line in lines[start : start + entries + 1]
    )


def aiohttp_file() -> str:
    import aiohttp

    return aiohttp.__file__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--worker", choices=["fluxclaw", "bare"])
    parser.add_argument("--base")
    parser.add_argument("--out")
    parser.add_argument("--plan")
    args = parser.parse_args()
    if args.worker:
        found = worker(
            args.worker, args.base, args.images, args.concurrency, args.profile, args.plan
        )
        Path(args.out).write_text(json.dumps(found))
        return
    sandbox = Sandbox()
    try:
        started = time.time()
        mine = measure(sandbox, "fluxclaw", args.images, args.concurrency, args.profile)
        bare = measure(sandbox, "bare", args.images, args.concurrency, plan=mine.pop("plan"))
    finally:
        sandbox.close()
    print(json.dumps({"fluxclaw": mine, "bare": bare, "s": time.time() - started}, indent=1))
    print(f"ratio: {mine['cpu_ms_image'] / bare['cpu_ms_image']:.2f}")


if __name__ == "__main__":
    main()
