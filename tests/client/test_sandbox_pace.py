"""A plain client polls at the pace the sandbox states, never faster than the floor, and the
fixture hands out clients pointed at its sandbox. Nothing here times the client: the assertions
are about which answers it saw, what it planned and how its requests were spaced at the least.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import fluxclaw
from fluxclaw import PollPolicy, TaskStatus, contract
from fluxclaw import _flows as flows
from fluxclaw.polling import POLL_FLOOR, optimal_offsets
from fluxclaw.waiting import waiter

KEY = ("flux-2-pro-text-to-image", "1k")
# A 2 s task: a real-time schedule (first poll about 5 s after the create) would first see it
# done; one at the sandbox's pace sees it running many times.
SLOW = "a lantern on a windowsill [sandbox:seconds=2]"
FIRST_SHARE = optimal_offsets(PollPolicy().prior_sigma, PollPolicy().price)[0]
# Arrival times are stamped by the server, so two polls a floor apart may look a little closer.
JITTER = 0.8
TASK_ID = "123e4567-e89b-12d3-a456-426614174000"


def status_gets(sandbox: Any, task_id: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if r["method"] == "GET" and task_id in r["path"]]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def assert_polled_at_the_sandbox_pace(
    sandbox: Any, client: Any, result: fluxclaw.Result, seen: list[TaskStatus]
) -> None:
    assert client.durations.server_speed == 100
    assert client.durations.time_scale == pytest.approx(0.01)
    # The first poll (seen[0] is the create) came while the 2 s task was still running.
    polled = [status.status for status in seen[1:]]
    assert polled[0] in ("pending", "processing") and polled[-1] == "completed"
    gets = status_gets(sandbox, result.task_id)
    assert len(gets) == len(polled) >= 3
    assert min(gaps([r["time"] for r in gets])) >= POLL_FLOOR * JITTER
    plan = client.durations.plan(KEY, "pro", "1k")  # one task learned: still the prior
    assert plan.first == pytest.approx(6.0 * 0.01 * FIRST_SHARE)


def test_a_plain_client_adopts_the_sandbox_pace_from_its_first_answer(
    fluxclaw_sandbox: Any,
) -> None:
    client = fluxclaw.Client(base_url=fluxclaw_sandbox.base_url, api_key=fluxclaw_sandbox.api_key)
    with client:
        assert client.durations.server_speed is None
        assert client.durations.plan(KEY, "pro", "1k").first == pytest.approx(6.0 * FIRST_SHARE)
        seen: list[TaskStatus] = []
        result = client.generate(SLOW, on_update=seen.append)
        assert_polled_at_the_sandbox_pace(fluxclaw_sandbox, client, result, seen)


async def test_a_plain_async_client_adopts_it_too(fluxclaw_sandbox: Any) -> None:
    async with fluxclaw_sandbox.async_client() as client:
        seen: list[TaskStatus] = []
        result = await client.generate(SLOW, on_update=seen.append)
        assert_polled_at_the_sandbox_pace(fluxclaw_sandbox, client, result, seen)


def test_a_resumed_wait_replans_after_its_first_answer(fluxclaw_sandbox: Any) -> None:
    task = fluxclaw_sandbox.client().submit_generate("a lantern")
    fresh = fluxclaw_sandbox.client()  # has heard nothing from the sandbox yet
    state = waiter(fresh.core, task.id, None, None, None, None)
    assert state.schedule.plan.near > 0.1  # the contract's real-time pace
    state.observe(fresh.run_flow(flows.send(fresh.core, state.call)))
    assert state.schedule.plan.near == pytest.approx(POLL_FLOOR)
    assert state.schedule.plan.cap <= 6.0 * 0.01
    assert fresh.wait(task.id).task_id == task.id


def test_an_explicit_time_scale_wins_over_the_server(fluxclaw_sandbox: Any) -> None:
    client = fluxclaw_sandbox.client(poll=PollPolicy(time_scale=1.0))
    task = client.submit_generate("a lantern")
    assert client.durations.server_speed == 100  # heard, not followed
    assert client.durations.time_scale == 1.0
    assert client.durations.plan(KEY, "pro", "1k").first == pytest.approx(6.0 * FIRST_SHARE)
    assert client.status(task).task_id == task.id


def test_a_new_speed_replaces_the_old_and_what_was_learned_at_it(fluxclaw_sandbox: Any) -> None:
    client = fluxclaw_sandbox.client()
    client.generate("a lantern")
    assert client.durations.snapshot(KEY)["first_polls"]
    fluxclaw_sandbox.configure(speed=50)
    client.balance()
    assert client.durations.server_speed == 50
    assert client.durations.time_scale == pytest.approx(0.02)
    assert client.durations.snapshot(KEY) == {"records": [], "first_polls": [], "rescaled": None}


def test_every_answer_states_the_speed(fluxclaw_sandbox: Any) -> None:
    with httpx.Client(base_url=fluxclaw_sandbox.base_url, trust_env=False) as http:
        auth = fluxclaw_sandbox.headers
        body = {"model": "flux-2-pro-text-to-image", "prompt": "a lantern"}
        created = http.post(contract.create_path("text_to_image"), json=body, headers=auth)
        task_id = created.json()["id"]
        answers = [
            created,
            http.get(contract.status_path("text_to_image", task_id), headers=auth),
            http.get(contract.BALANCE_PATH),  # 401
            http.get(contract.status_path("text_to_image", TASK_ID), headers=auth),  # 404
            http.get(contract.PRICE_SCHEDULES_PATH),
            http.post(contract.create_path("text_to_image"), json={}, headers=auth),  # 422
        ]
        assert [a.status_code for a in answers] == [200, 200, 401, 404, 200, 422]
        assert {a.headers[contract.H_SANDBOX_SPEED] for a in answers} == {"100"}
        fluxclaw_sandbox.configure(speed=2.5)
        assert http.get(contract.PRICE_SCHEDULES_PATH).headers[contract.H_SANDBOX_SPEED] == "2.5"
        refused = http.post("/_sandbox/config", json={"speed": 1e12})
        assert refused.status_code >= 400
    assert contract.sandbox_speed("2.5") == 2.5


@pytest.mark.parametrize("speed", [0, -1, 1e12])
def test_the_sandbox_runs_only_at_speeds_a_client_adopts(speed: float) -> None:
    from fluxclaw.sandbox.server import SandboxServer

    with pytest.raises(ValueError, match="speed"):
        SandboxServer(speed=speed)


# -- a hostile server ----------------------------------------------------------------------------


class Hostile(ThreadingHTTPServer):
    """Answers every create and status with a task that never ends, and states `speed`."""

    daemon_threads = True

    def __init__(self, speed: str) -> None:
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.speed = speed
        self.polls: list[float] = []  # monotonic arrival times of status requests

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up at its deadline closed the connection mid-answer


class HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Hostile

    def do_GET(self) -> None:
        self.server.polls.append(time.monotonic())
        self.answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer()

    def answer(self) -> None:
        body = json.dumps({"id": TASK_ID, "status": "processing"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header(contract.H_SANDBOX_SPEED, self.server.speed)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def hostile(speed: str) -> Iterator[Hostile]:
    server = Hostile(speed)
    # A short poll interval: `shutdown` waits for one.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    "speed", ["0", "-1", "nan", "inf", "-inf", "1e12", "100000", "abc", "", "1" * 400]
)
def test_a_nonsense_speed_is_ignored(make_client: Any, speed: str) -> None:
    with hostile(speed) as server:
        client = make_client(base_url=server.base_url, poll=PollPolicy())
        task = client.submit_generate("a lantern")
        assert client.status(task).status == "processing"
        assert client.durations.server_speed is None
        assert client.durations.time_scale == 1.0
        assert client.durations.plan(KEY, "pro", "1k").first == pytest.approx(6.0 * FIRST_SHARE)


def test_no_stated_speed_polls_faster_than_the_floor(make_client: Any) -> None:
    fastest = str(contract.SANDBOX_SPEEDS[1])
    with hostile(fastest) as server:
        client = make_client(base_url=server.base_url, poll=PollPolicy(), timeout=0.5)
        with pytest.raises(fluxclaw.TaskTimeoutError):
            client.generate("a lantern")
        assert client.durations.server_speed == contract.SANDBOX_SPEEDS[1]
        # Every planned time is at the floor: only the floor spaces the polls.
        assert len(server.polls) >= 2
        assert min(gaps(server.polls)) >= POLL_FLOOR * JITTER


# -- the fixture's clients -----------------------------------------------------------------------


def test_the_fixture_hands_out_ready_clients(fluxclaw_sandbox: Any) -> None:
    client = fluxclaw_sandbox.client(timeout=30)
    assert client.base_url == fluxclaw_sandbox.base_url
    assert client.generate("a lantern").status == "completed"
    with fluxclaw_sandbox.client() as other:  # `with` closes it now; the fixture again later
        assert "balance_cents" in other.balance()


async def test_the_fixture_hands_out_async_clients(fluxclaw_sandbox: Any) -> None:
    async with fluxclaw_sandbox.async_client(timeout=30) as client:
        assert client.base_url == fluxclaw_sandbox.base_url
        assert (await client.generate("a lantern")).status == "completed"


def test_the_fixture_closes_its_clients_when_the_sandbox_stops(
    fluxclaw_sandbox_factory: Any,
) -> None:
    sandbox = fluxclaw_sandbox_factory()
    client = sandbox.client()
    client.balance()
    sandbox.close()  # what the fixture does when the test ends
    with pytest.raises(RuntimeError, match="closed"):
        client.balance()
