"""Client tests run over real HTTP against the sandbox, each body once per client kind.

`make_client` yields either a `Client` or an `AsyncClient` behind a thin adapter that runs its
coroutines on one private event loop, so a single test body covers both (replicate-python's
pattern). Polling is scaled to the sandbox's speed and retries are quick.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fluxclaw import AsyncClient, Client, PollPolicy, RetryPolicy

FAST_POLL = PollPolicy(time_scale=0.01)
FAST_RETRY = RetryPolicy(
    max_attempts=10, backoff_base=0.01, backoff_cap=0.2, max_elapsed=30, retry_after_cap=0.5
)


class AsyncAsSync:
    """An AsyncClient whose coroutine methods run to completion on a private loop."""

    def __init__(self, client: AsyncClient) -> None:
        self.inner = client
        self.runner = asyncio.Runner()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: self.runner.run(attr(*args, **kwargs))
        return attr

    def close(self) -> None:
        self.runner.run(self.inner.aclose())
        self.runner.close()

    def __repr__(self) -> str:
        return repr(self.inner)


MakeClient = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox(fluxclaw_sandbox: Any) -> Any:
    return fluxclaw_sandbox


@pytest.fixture
def make_client(kind: str, sandbox: Any) -> Iterator[MakeClient]:
    made: list[Any] = []

    def make(target: Any = None, **options: Any) -> Any:
        target = target or sandbox
        options.setdefault("api_key", target.api_key)
        options.setdefault("base_url", target.base_url)
        options.setdefault("poll", FAST_POLL)
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout", 30)
        client = Client(**options) if kind == "sync" else AsyncAsSync(AsyncClient(**options))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> Any:
    return make_client()
