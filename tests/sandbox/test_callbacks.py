"""Callbacks: the status envelope POSTed to a loopback receiver when a task ends, with retries."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx

from .conftest import PRO, T2I, Receiver, api_client, wait_for


def test_callback_is_delivered_with_the_status_envelope(
    api: httpx.Client, sandbox: Any, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    body = {"model": PRO, "prompt": "call me [sandbox:seconds=0.05]", "callback_url": hook.url}
    task_id = api.post(T2I, json=body).json()["id"]
    wait_for(lambda: hook.bodies)
    assert hook.bodies == [api.get(f"{T2I}/{task_id}").json()]
    assert hook.bodies[0]["status"] == "completed" and hook.bodies[0]["usage"]["cost"] == 0.05
    # The receiver has the body before the sandbox has its answer: wait for the record too.
    deliveries = wait_for(lambda: sandbox.task(task_id)["callback_deliveries"])
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 200)]


def test_failed_tasks_call_back_too(api: httpx.Client, receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    body = {
        "model": PRO,
        "prompt": "no [sandbox:fail] [sandbox:seconds=0]",
        "callback_url": hook.url,
    }
    task_id = api.post(T2I, json=body).json()["id"]
    wait_for(lambda: hook.bodies)
    assert hook.bodies == [{"id": task_id, "status": "failed", "error": "Content policy violation"}]


def test_callback_is_retried_with_backoff_until_it_succeeds(
    fluxclaw_sandbox_factory: Any, receiver: Callable[..., Receiver]
) -> None:
    sandbox = fluxclaw_sandbox_factory(speed=10)  # backoff 0.1 s, then 0.2 s
    hook = receiver(failures=2)
    body = {"model": PRO, "prompt": "retry me [sandbox:seconds=0]", "callback_url": hook.url}
    with api_client(sandbox) as api:
        task_id = api.post(T2I, json=body).json()["id"]
    wait_for(lambda: hook.bodies)
    assert hook.statuses == [500, 500, 200]
    deliveries = wait_for(lambda: (d := sandbox.task(task_id)["callback_deliveries"])[2:] and d)
    assert [d["status"] for d in deliveries] == [500, 500, 200]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(deliveries)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # at least 1 s, 2 s, ... divided by the speed


def test_unreachable_receiver_is_retried_and_recorded(api: httpx.Client, sandbox: Any) -> None:
    hook = Receiver()
    url = hook.url  # never started: nothing listens on this port
    hook.server.server_close()
    body = {"model": PRO, "prompt": "nobody home [sandbox:seconds=0]", "callback_url": url}
    task_id = api.post(T2I, json=body).json()["id"]
    deliveries = wait_for(lambda: (d := sandbox.task(task_id)["callback_deliveries"])[1:] and d)
    assert deliveries[0]["status"] is None and deliveries[0]["error"]
