"""Fault soak: generations through `AsyncClient` against the sandbox with ~10% 5xx, 5% 429,
2% resets, 2% dropped answers and 5% failed tasks. Every task ends saved or with its typed
error, no task is created twice, and a failed task is never charged. 300 generations in the
normal run; `--soak` makes 2,000."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import AsyncClient, PollPolicy, RetryPolicy, errors
from tests.reliability import report

FAULTS = {"500": 0.05, "503": 0.05, "429": 0.05, "reset": 0.02, "drop": 0.02, "fail": 0.05}
POLL = PollPolicy(time_scale=0.01)
RETRY = RetryPolicy(
    max_attempts=12, backoff_base=0.01, backoff_cap=0.2, max_elapsed=60, retry_after_cap=0.5
)


def test_fault_soak(
    fluxclaw_sandbox_factory: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    count = 2000 if request.config.getoption("--soak") else 300
    sandbox = fluxclaw_sandbox_factory(speed=100, faults=FAULTS, seed=12)
    out = tmp_path / "out"

    async def run() -> list[tuple[str, object]]:
        async with AsyncClient(
            api_key=sandbox.api_key, base_url=sandbox.base_url, poll=POLL, retry=RETRY, timeout=120
        ) as client:
            gate = asyncio.Semaphore(50)

            async def one(i: int) -> tuple[str, object]:
                async with gate:
                    try:
                        result = await client.generate(f"soak image {i}")
                        saved = await client.save(result, out, stem=f"soak-{i}")
                        return "saved", saved[0].path
                    except errors.FluxclawError as error:
                        return type(error).__name__, error

            return await asyncio.gather(*(one(i) for i in range(count)))

    outcomes = asyncio.run(run())
    kinds = Counter(kind for kind, _ in outcomes)
    # Every task ends saved, or failed by the server (typed, with its id); nothing else.
    assert set(kinds) <= {"saved", "TaskFailedError"}, kinds
    failed_ids = {error.task_id for kind, error in outcomes if kind == "TaskFailedError"}
    assert all(failed_ids)
    saved = [path for kind, path in outcomes if kind == "saved"]
    assert len(saved) == len(set(saved)) == kinds["saved"]
    for path in saved[:: max(1, len(saved) // 50)]:
        with Image.open(path) as image:
            image.load()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]

    log = sandbox.requests()
    creates = [r for r in log if r["method"] == "POST" and r["path"].endswith("/text_to_image")]
    tasks = sandbox.tasks()
    charges = sandbox.ledger()["charges"]
    duplicates = len(tasks) - len({r["idempotency_key"] for r in creates})
    charged = Counter(c["task_id"] for c in charges)
    lost = count - kinds["saved"] - kinds["TaskFailedError"]
    assert len(tasks) == count and duplicates == 0
    assert max(charged.values()) == 1
    assert not failed_ids & set(charged), "a failed task was charged"
    assert len(charged) == kinds["saved"]
    faults = Counter(r["fault"] for r in log if r.get("fault"))
    retried = len(creates) - count
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items()))
    line = (
        f"{count} generations at concurrency 50: {kinds['saved']} saved, "
        f"{kinds['TaskFailedError']} failed by the server (typed, not charged); "
        f"{sum(faults.values())} faults injected ({by_kind}), each answered by a retry; "
        f"{retried} creates sent again with their key; duplicates {duplicates}, lost {lost}."
    )
    report.figure("fault soak", line)
    report.record("fault soak", f"{count} generations", [] if lost == 0 else [f"lost {lost}"])
