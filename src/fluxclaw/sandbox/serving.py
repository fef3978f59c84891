"""uvicorn in a background thread, for the sandbox (the `fluxclaw[sandbox]` extra).

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

import uvicorn

from fluxclaw._serving import GRACE_SECONDS


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


class UvicornThread:
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
