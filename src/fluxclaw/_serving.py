"""uvicorn in a background thread, for the sandbox and the callback server.

uvicorn is driven directly (not through `uvicorn.run`) so that the port is known before the
server starts (port 0 works), start returns only once connections are accepted, stop takes
milliseconds rather than uvicorn's fixed 0.1 s ticks, and no thread is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Final, Self

import uvicorn

GRACE_SECONDS: Final = 1


class _Server(uvicorn.Server):
    """uvicorn.Server that wakes at once when asked to stop and drains connections quickly."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def request_exit(self) -> None:
        """Thread-safe."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have closed already
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or GRACE_SECONDS)
        state = self.server_state
        while (state.connections or state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


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


class BackgroundServer:
    """One uvicorn server on a bound socket, in a daemon thread of its own."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, name: str) -> None:
        self._server = _Server(config)
        self._sock = sock
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as error:  # reported by start()
            self._failure.append(error)

    def start(self, timeout: float, what: str) -> None:
        """Returns once connections are accepted; raises RuntimeError naming `what` if not."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.request_exit()
                self._thread.join(2)
                self._sock.close()
                reason = f": {self._failure[0]}" if self._failure else ""
                raise RuntimeError(f"{what} did not start{reason}")
            time.sleep(0.002)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.request_exit()
        grace = self._server.config.timeout_graceful_shutdown or GRACE_SECONDS
        self._thread.join(grace + 10)


class Served:
    """What the sandbox and the callback server share: one app on host:port, served in the
    background from `start()` (or `with`) until `stop()`."""

    host: str
    port: int
    _runner: BackgroundServer | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _serve(self, config: uvicorn.Config, name: str, timeout: float) -> str:
        """Bind (port 0 picks one), serve `config`'s app, and return the base URL."""
        if self._runner is None:
            sock = bind(self.host, self.port)
            self.port = sock.getsockname()[1]
            runner = BackgroundServer(config, sock, name=f"fluxclaw-{name}-{self.port}")
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
