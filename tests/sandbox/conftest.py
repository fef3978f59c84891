"""Sandbox tests speak real HTTP to a real sandbox on 127.0.0.1, through the pytest plugin."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from fluxclaw import contract

PRO = "flux-2-pro-text-to-image"
FLEX = "flux-2-flex-text-to-image"
MAX = "flux-2-max-text-to-image"
PRO_REMIX = "flux-2-pro-remix-image"
MAX_REMIX = "flux-2-max-remix-image"
T2I = contract.create_path("text_to_image")
REMIX = contract.create_path("remix_image")


def api_client(sandbox: Any, api_key: str | None = None) -> httpx.Client:
    key = sandbox.api_key if api_key is None else api_key
    return httpx.Client(
        base_url=sandbox.base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
        trust_env=False,
    )


@pytest.fixture
def sandbox(fluxclaw_sandbox: Any) -> Any:
    return fluxclaw_sandbox


@pytest.fixture
def api(sandbox: Any) -> Iterator[httpx.Client]:
    with api_client(sandbox) as client:
        yield client


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll a condition until it is truthy; fail at the deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.005)


def wait_done(api: httpx.Client, path: str, timeout: float = 10.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(path).json()
        return body if body["status"] in contract.TERMINAL_STATUSES else None

    result: dict[str, Any] = wait_for(done, timeout)
    return result


class Receiver:
    """A loopback HTTP server that records callback deliveries; it can fail the first few."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                status = 500 if len(receiver.statuses) < receiver.failures else 200
                receiver.statuses.append(status)
                if status == 200:
                    receiver.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures).__enter__())
        return made[-1]

    yield make
    for item in made:
        item.__exit__()
