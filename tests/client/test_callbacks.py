"""The callback receiver: a hint confirmed by a GET, idempotent, and closed without its token."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from fluxclaw import CallbackReceiver, CallbackServer, PollPolicy, TaskStatus

TASK = "123e4567-e89b-12d3-a456-426614174000"


def test_receiver_rejects_requests_without_its_token_and_dedupes() -> None:
    confirmed: list[str] = []
    receiver = CallbackReceiver(confirm=lambda task_id: confirmed.append(task_id) or object())
    with CallbackServer(receiver) as server:
        assert server.callback_url and receiver.token in server.callback_url
        body = {"id": TASK, "status": "completed"}
        wrong = f"{server.base_url}/callbacks/not-the-token"
        assert httpx.post(wrong, json=body).status_code == 404
        assert httpx.post(f"{server.base_url}/callbacks/", json=body).status_code == 404
        assert not receiver.hinted(TASK)
        answers = [httpx.post(server.callback_url, json=body) for _ in range(3)]
        assert [a.json()["repeated"] for a in answers] == [False, True, True]
        assert httpx.post(server.callback_url, content=b"junk").status_code == 400
        deadline = time.monotonic() + 5
        while not receiver.confirmed and time.monotonic() < deadline:
            time.sleep(0.01)
    assert receiver.hinted(TASK) and receiver.deliveries == 3
    assert confirmed == [TASK]  # one GET however many deliveries
    assert receiver.token not in repr(receiver)


def test_wait_for_wakes_on_a_callback() -> None:
    receiver = CallbackReceiver()
    with CallbackServer(receiver) as server:
        assert server.callback_url
        url = server.callback_url
        threading.Timer(
            0.05, lambda: httpx.post(url, content=json.dumps({"id": TASK, "status": "failed"}))
        ).start()
        started = time.monotonic()
        assert receiver.wait_for(TASK, 5)
        assert time.monotonic() - started < 4  # woke by the callback, not the 5 s limit
        assert not receiver.wait_for("00000000-0000-0000-0000-000000000000", 0.01)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_callback_server_on_ipv6_loopback_gives_a_working_url() -> None:
    with CallbackServer(host="::1") as server:
        assert server.base_url.startswith("http://[::1]:")
        assert server.callback_url
        body = {"id": TASK, "status": "completed"}
        assert httpx.post(server.callback_url, json=body).status_code == 200
        assert server.receiver.wait_for(TASK, 5)
    with pytest.raises(httpx.ConnectError):  # stopped: nothing listens any more
        httpx.post(server.callback_url, json=body)


def test_wait_via_callback_instead_of_polling(make_client: Any, sandbox: Any) -> None:
    # A frugal schedule that would take a long time to find the result without the callback.
    client = make_client(poll=PollPolicy(time_scale=1.0), timeout=20)
    seen: list[TaskStatus] = []
    with CallbackServer() as server:
        result = client.generate(
            "a lantern [sandbox:seconds=0.3]", receiver=server, on_update=seen.append
        )
    assert result.status == "completed"
    assert server.receiver.hinted(result.task_id)
    # The contract's Pro time (6 s) would put a scheduled poll seconds later: only the
    # confirming GET was sent.
    gets = [r for r in sandbox.requests() if r["method"] == "GET" and result.task_id in r["path"]]
    assert len(gets) == 1


def test_a_false_callback_is_confirmed_by_a_get_and_never_spins(
    make_client: Any, sandbox: Any
) -> None:
    # The contract's real-time schedule (not the sandbox's stated pace): its next poll is late.
    client = make_client(poll=PollPolicy(time_scale=1.0), timeout=20)
    with CallbackServer() as server:
        assert server.callback_url
        task = client.submit_generate("a lantern [sandbox:seconds=0.5]")
        forged = {"id": task.id, "status": "completed"}  # before the task is done
        assert httpx.post(server.callback_url, json=forged).status_code == 200
        result = client.wait(task, receiver=server)
    assert result.status == "completed"
    gets = [r for r in sandbox.requests() if r["method"] == "GET" and task.id in r["path"]]
    assert len(gets) <= 4  # the spent hint fell back to the schedule, not to a busy loop


async def test_many_async_waits_each_end_on_their_callback_with_one_get(sandbox: Any) -> None:
    # More waits than the default thread pool has threads: a wait must cost no thread, and a
    # callback-driven wait sends no poll of its own, only the confirming GET.
    from fluxclaw import AsyncClient

    async with AsyncClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, poll=PollPolicy(time_scale=1.0)
    ) as client:
        with CallbackServer() as server:
            results = await asyncio.gather(
                *(
                    client.generate(f"lantern {i} [sandbox:seconds=0.4]", receiver=server)
                    for i in range(40)
                )
            )
    assert all(r.status == "completed" for r in results)
    for result in results:
        gets = [
            r for r in sandbox.requests() if r["method"] == "GET" and result.task_id in r["path"]
        ]
        assert len(gets) == 1, result.task_id


def test_the_receiver_works_mounted_under_a_prefix_in_another_asgi_server() -> None:
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import Mount

    receiver = CallbackReceiver()
    app = Starlette(routes=[Mount("/hooks", app=receiver)])

    async def post() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.post(
                f"/hooks/callbacks/{receiver.token}", json={"id": TASK, "status": "completed"}
            )
            return answer.status_code

    assert asyncio.run(post()) == 200 and receiver.hinted(TASK)
