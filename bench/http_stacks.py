"""Client CPU per status request for each Python HTTP stack, polled the way a batch polls.

    .venv/bin/python bench/http_stacks.py --write

This is the floor under the client benchmark's "CPU per image": 40 waits poll one task with a
random 0.1 to 0.5 s between polls (so every request wakes a cold event loop, as in a real
batch), over 32 kept-alive connections to one sandbox, and the client process's CPU time is
divided by the number of requests. Stacks: httpx on its own engine (httpcore), httpx on aiohttp
(`httpx-aiohttp`, what `AsyncClient` uses), bare aiohttp, and the loop alone with no request;
each on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docfile
from clients import KEY, MODEL, Sandbox

HEADING = "HTTP stacks: client CPU per status request"
CONNECTIONS = 32
WAITS = 40

Get = Callable[[], Awaitable[None]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def polled(get: Get, requests: int) -> float:
    """CPU milliseconds per request, `WAITS` waits polling with random gaps."""
    rng = random.Random(1)

    async def wait() -> None:
        for _ in range(requests // WAITS):
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            await get()

    await get()  # the first connection is start-up, not per-request work
    before = cpu_seconds()
    await asyncio.gather(*(wait() for _ in range(WAITS)))
    return 1000 * (cpu_seconds() - before) / (requests // WAITS * WAITS)


async def with_httpx(url: str, path: str, requests: int, aiohttp_engine: bool) -> float:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    transport = AiohttpTransport(limits=limits) if aiohttp_engine else None
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, transport=transport
    ) as http:

        async def get() -> None:
            (await http.get(path)).json()

        return await polled(get, requests)


async def with_aiohttp(url: str, path: str, requests: int) -> float:
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:

        async def get() -> None:
            async with http.get(path) as answer:
                await answer.json()

        return await polled(get, requests)


async def loop_only(requests: int) -> float:
    async def get() -> None:
        return None

    return await polled(get, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per stack and loop")
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args()
    sandbox = Sandbox(balance_usd=100.0)
    try:
        made = sandbox.http.post(
            "/api/v1/flux_2/text_to_image",
            json={"model": MODEL, "prompt": "a mug on a table"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        path = f"/api/v1/flux_2/text_to_image/{made.json()['id']}"
        n = args.requests
        stacks: dict[str, Callable[[], Awaitable[float]]] = {
            "httpx (httpcore)": lambda: with_httpx(sandbox.url, path, n, aiohttp_engine=False),
            "httpx on aiohttp (fluxclaw `AsyncClient`)": lambda: with_httpx(
                sandbox.url, path, n, aiohttp_engine=True
            ),
            "aiohttp alone": lambda: with_aiohttp(sandbox.url, path, n),
            "event loop alone, no request": lambda: loop_only(n),
        }
        rows = []
        for name, run in stacks.items():
            plain = asyncio.run(run())
            fast = uvloop.run(run())
            rows.append(f"| {name} | {plain:.2f} | {fast:.2f} |")
            print(rows[-1], flush=True)
    finally:
        sandbox.close()
    if args.write:
        table = "\n".join(rows)
        docfile.record(
            HEADING,
            f"""## {HEADING}

{WAITS} waits poll one sandbox task with random 0.1 to 0.5 s gaps over {CONNECTIONS} kept-alive
connections, {args.requests} requests per stack; client CPU milliseconds per request.
Machine: {docfile.machine()}.

| stack | asyncio loop | uvloop |
|---|---|---|
{table}

Command:

```sh
.venv/bin/python bench/http_stacks.py --write
```
""",
        )


if __name__ == "__main__":
    main()
