"""pytest fixtures that run a real sandbox per test, so users test their own RunAPI code offline.

Registered through the `pytest11` entry point, so installing fluxclaw makes `fluxclaw_sandbox`
and `fluxclaw_sandbox_factory` available to every test suite. The handle talks to the sandbox
over its HTTP inspection API (not its memory), exactly as a test in another process would, and
hands out clients already pointed at it (which poll at its pace: it states its speed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Unpack

import httpx
import pytest

from fluxclaw import sandbox

if TYPE_CHECKING:
    from fluxclaw.client import AsyncClient, Client, ClientOptions
    from fluxclaw.sandbox.server import SandboxServer

TEST_API_KEY: Final = "sk-sandbox-test"
FAST: Final = 100.0


class SandboxHandle:
    """A running sandbox: `base_url`, `api_key`, clients for it, and the inspection calls."""

    def __init__(self, server: SandboxServer, api_key: str) -> None:
        self.server = server
        self.base_url = server.base_url
        self.api_key = api_key
        self._http = httpx.Client(base_url=self.base_url, timeout=30, trust_env=False)
        self._clients: list[Client] = []
        self._closed = False

    def client(self, **options: Unpack[ClientOptions]) -> Client:
        """A `fluxclaw.Client` for this sandbox (its base URL and key, any other client option),
        closed when the test ends; `with` closes it sooner."""
        from fluxclaw.client import Client

        made = Client(self.api_key, self.base_url, **options)
        self._clients.append(made)
        return made

    @contextlib.asynccontextmanager
    async def async_client(self, **options: Unpack[ClientOptions]) -> AsyncIterator[AsyncClient]:
        """`async with sandbox.async_client() as client:` a `fluxclaw.AsyncClient` for this
        sandbox, closed when the block ends. Only as a block: its connections belong to the
        test's event loop, which is gone by the time the fixture could close them."""
        from fluxclaw.client import AsyncClient

        async with AsyncClient(self.api_key, self.base_url, **options) as made:
            yield made

    @property
    def headers(self) -> dict[str, str]:
        """Authorization for the sandbox's API routes."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far except inspection ones, in arrival order."""
        result: list[dict[str, Any]] = self._get("/_sandbox/requests")["requests"]
        return result

    def ledger(self) -> dict[str, Any]:
        return self._get("/_sandbox/ledger")

    def tasks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/_sandbox/tasks")["tasks"]
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        for task in self.tasks():
            if task["id"] == task_id:
                return task
        raise KeyError(task_id)

    @property
    def c2pa_ca(self) -> bytes:
        """The PEM root certificate of the sandbox's test CA: the trust anchor under which its
        signed images (c2pa=True or `[sandbox:c2pa]`) verify as trusted."""
        response = self._http.get("/_sandbox/c2pa/ca.pem")
        response.raise_for_status()
        return response.content

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change faults, speed, rate_limit, prices, retry_after, image_format or c2pa while the
        sandbox runs."""
        response = self._http.post("/_sandbox/config", json=config)
        response.raise_for_status()
        result: dict[str, Any] = response.json()["config"]
        return result

    def reset(self) -> None:
        self._http.post("/_sandbox/reset").raise_for_status()

    def wait_until(
        self, condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01
    ) -> Any:
        """Poll `condition` until it returns something truthy; fail the test at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout} s")
            time.sleep(interval)

    def _get(self, path: str) -> dict[str, Any]:
        response = self._http.get(path)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for made in self._clients:
            made.close()
        self._http.close()
        self.server.stop()

    def __repr__(self) -> str:
        return f"SandboxHandle({self.base_url})"


SandboxFactory = Callable[..., SandboxHandle]


def _start(options: dict[str, Any]) -> SandboxHandle:
    # The plugin loads in every pytest session of a project that installs fluxclaw; only a
    # test that asks for a sandbox needs the server libraries, and is told how to get them.
    if not sandbox.available():
        pytest.fail(sandbox.missing("the fluxclaw_sandbox fixture"), pytrace=False)
    from fluxclaw.credentials import CredentialsUnavailableError
    from fluxclaw.sandbox.server import SandboxServer

    options.setdefault("speed", FAST)
    options.setdefault("seed", 0)
    api_key = options.setdefault("api_key", TEST_API_KEY)
    try:
        server = SandboxServer(**options)
    except CredentialsUnavailableError as error:
        pytest.fail(str(error), pytrace=False)
    server.start()
    return SandboxHandle(server, api_key or TEST_API_KEY)


@pytest.fixture
def fluxclaw_sandbox_factory() -> Iterator[SandboxFactory]:
    """Start sandboxes with custom options (SandboxServer's keywords); all stop after the test.

    Defaults: speed 100, seed 0, api_key "sk-sandbox-test" (pass api_key=None to accept any key).
    `image_format="jpeg"` or `"webp"` and `c2pa=True` (signed images; `handle.c2pa_ca` is the
    trust anchor) change what every task's image is.
    """
    started: list[SandboxHandle] = []

    def start(**options: Any) -> SandboxHandle:
        handle = _start(dict(options))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.close()


@pytest.fixture
def fluxclaw_sandbox(fluxclaw_sandbox_factory: SandboxFactory) -> SandboxHandle:
    """A sandbox on a free loopback port at 100x speed, requiring the key `handle.api_key`."""
    return fluxclaw_sandbox_factory()
