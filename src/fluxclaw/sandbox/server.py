"""Running the sandbox: in a background thread for tests and `--sandbox` modes, or in the
foreground for `fluxclaw sandbox`.

uvicorn is driven directly (not through `uvicorn.run`) so that the port is known before the
server starts (port 0 works), start returns only once connections are accepted, stop takes
milliseconds rather than uvicorn's fixed 0.1 s ticks, and no thread is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fluxclaw.sandbox import faults as faults_mod
from fluxclaw.sandbox.app import ABORT_EXTENSION, create_app
from fluxclaw.sandbox.state import MAX_PRICE_CENTS, SandboxConfig, SandboxState

START_TIMEOUT: Final = 15.0
GRACE_SECONDS: Final = 1


class AbortableProtocol(HttpToolsProtocol):
    """Hands the app a way to drop the TCP connection, which ASGI itself cannot express.

    The scope dict built here is the one the request cycle passes to the app, so an entry added
    after the parent's on_headers_complete reaches the app (which then calls it for the `reset`
    and `drop` faults).
    """

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = self.transport.abort


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


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
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


class SandboxServer:
    """A RunAPI-compatible Flux 2 server on loopback; see README "Sandbox" for what it serves."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        faults: str | Mapping[str, Any] | None = None,
        api_key: str | None = None,
        balance_usd: float = 100.0,
        rate_limit: float | None = None,
        seed: int = 0,
        retry_after: bool = False,
        max_price_cents: int = MAX_PRICE_CENTS,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed={speed} must be above 0.")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit={rate_limit} must be above 0.")
        if balance_usd < 0:
            raise ValueError(f"balance_usd={balance_usd} must not be negative.")
        config = SandboxConfig(
            speed=float(speed),
            faults=faults_mod.parse(faults),
            rate_limit=None if rate_limit is None else float(rate_limit),
            retry_after=retry_after,
            max_price_cents=max_price_cents,
        )
        self.host = host
        self.port = port
        self.state = SandboxState(
            config=config,
            api_key=api_key or None,
            balance_cents=round(balance_usd * 100),
            seed=seed,
        )
        self.base_url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Serve in a background thread; returns the base URL once connections are accepted."""
        if self._thread is not None:
            return self.base_url
        sock = _bind(self.host, self.port)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            http=AbortableProtocol,
            loop="auto",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
            timeout_keep_alive=30,
        )
        server = _Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as error:  # reported to start() below
                failure.append(error)

        thread = threading.Thread(target=run, name=f"fluxclaw-sandbox-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.request_exit()
                thread.join(2)
                sock.close()
                raise RuntimeError(f"the sandbox did not start: {failure[0] if failure else ''}")
            time.sleep(0.002)
        self._server, self._thread = server, thread
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(GRACE_SECONDS + 10)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Print the base URL as the first stdout line once serving; stop on SIGINT or SIGTERM."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            sys.stdout.write(self.base_url + "\n")
            sys.stdout.flush()
            thread = self._thread
            while not stop.wait(0.5):
                if thread is None or not thread.is_alive():
                    break
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __repr__(self) -> str:
        where = self.base_url or "not started"
        return f"SandboxServer({where}, speed={self.state.config.speed:g})"
