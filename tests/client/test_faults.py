"""Faults: 200 generations through 20% injected failures all complete, each paid exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fluxclaw import AsyncClient, Client, Result

from .conftest import FAST_POLL, FAST_RETRY

FAULTS = {"500": 0.05, "503": 0.05, "429": 0.05, "reset": 0.025, "drop": 0.025}


def test_200_generations_through_faults_are_charged_exactly_once(
    fluxclaw_sandbox_factory: Any,
) -> None:
    sandbox = fluxclaw_sandbox_factory(speed=100, faults=FAULTS)

    async def run() -> list[Result]:
        async with AsyncClient(
            api_key=sandbox.api_key,
            base_url=sandbox.base_url,
            poll=FAST_POLL,
            retry=FAST_RETRY,
            timeout=60,
        ) as client:
            limit = asyncio.Semaphore(50)

            async def one(i: int) -> Result:
                async with limit:
                    return await client.generate(f"fault test image number {i}")

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(run())
    assert len({r.task_id for r in results}) == 200
    charges = sandbox.ledger()["charges"]
    assert len(charges) == 200
    assert Counter(c["task_id"] for c in charges).most_common(1)[0][1] == 1
    assert len(sandbox.tasks()) == 200
    log = sandbox.requests()
    faults = Counter(r["fault"] for r in log if r.get("fault"))
    assert faults["drop"] > 0 and faults["500"] > 0 and faults["429"] > 0
    creates = [r for r in log if r["method"] == "POST" and "text_to_image" in r["path"]]
    assert all(r["idempotency_key"] for r in creates)


def test_garbage_and_html_answers_are_retried(fluxclaw_sandbox_factory: Any) -> None:
    sandbox = fluxclaw_sandbox_factory(speed=100, faults={"garbage": 0.3, "html": 0.3})
    with Client(
        api_key=sandbox.api_key, base_url=sandbox.base_url, poll=FAST_POLL, retry=FAST_RETRY
    ) as client:
        results = [client.generate(f"garbage test {i}") for i in range(5)]
    assert len({r.task_id for r in results}) == 5
    assert len(sandbox.ledger()["charges"]) == 5
