"""Serving an app from a background thread, for the sandbox and the callback server: the bound
socket (the port is known before the server starts; port 0 works), a runner that returns from
`start` only once connections are accepted, and a quick stop with no thread left behind.

Only the standard library and aiohttp (a dependency of the client) are used here: the callback
receiver runs on aiohttp's own server; the sandbox brings uvicorn (`sandbox/serving.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Protocol, Self

GRACE_SECONDS: Final = 1


class Runner(Protocol):
    def start(self, timeout: float, what: str) -> None: ...

    def stop(self) -> None: ...

    @property
    def alive(self) -> bool: ...


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), IPv4 or IPv6 as the host says."""
    where = host or None  # "": every interface, as socket.bind has it
    infos = socket.getaddrinfo(where, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class AiohttpThread:
    """An aiohttp application on a bound socket, served by its own event loop in a daemon
    thread. `start` returns once connections are accepted."""

    def __init__(
        self, make_app: Callable[[], Awaitable[Any]], sock: socket.socket, name: str
    ) -> None:
        self._make_app = make_app
        self._sock = sock
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by start()
            self._failure.append(error)
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        runner = web.AppRunner(
            await self._make_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=GRACE_SECONDS,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._done.wait()
        finally:
            await runner.cleanup()

    def start(self, timeout: float, what: str) -> None:
        """Returns once connections are accepted; raises RuntimeError naming `what` if not."""
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure or not self._thread.is_alive():
            self.stop()
            self._sock.close()
            reason = f": {self._failure[0]}" if self._failure else ""
            raise RuntimeError(f"{what} did not start{reason}")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        loop, done = self._loop, self._done
        if loop is not None and done is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(done.set)
        if self._thread.is_alive():
            self._thread.join(GRACE_SECONDS + 10)


class Served:
    """What the sandbox and the callback server share: one app on host:port, served in the
    background from `start()` (or `with`) until `stop()`."""

    host: str
    port: int
    _runner: Runner | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _serve(
        self, runner_for: Callable[[socket.socket, str], Runner], name: str, timeout: float
    ) -> str:
        """Bind (port 0 picks one), start the runner `runner_for(sock, thread_name)` makes,
        and return the base URL."""
        if self._runner is None:
            sock = bind(self.host, self.port)
            self.port = sock.getsockname()[1]
            runner = runner_for(sock, f"fluxclaw-{name}-{self.port}")
            runner.start(timeout, f"the {name}")
            self._runner = runner
        return self.base_url

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        raise NotImplementedError
