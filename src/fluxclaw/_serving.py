"""Serving an app from a background thread, for the sandbox and the callback server: the bound
socket (the port is known before the server starts; port 0 works), a runner that returns from
`start` only once connections are accepted, and a quick stop with no thread left behind.

Only the standard library and aiohttp (a dependency of the client) are used here: the callback
receiver runs on aiohttp's own server; the sandbox brings uvicorn (`sandbox/serving.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler

GRACE_SECONDS: Final = 1
# Errors that say the process (or the system) has no file descriptor or buffer to spare.
NO_ROOM: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long the accept loop rests after accept() failed, doubling up to the second figure.
ACCEPT_PAUSE: Final = (0.05, 1.0)


@dataclass(frozen=True, slots=True)
class Limits:
    """What an `AiohttpThread` holds at most, so that no client can take the process's file
    descriptors: `connections` open at once (one more is closed as soon as it is accepted),
    `idle` seconds for a connection to complete a request (counted from its accept, then from
    each answer), and `request` seconds for a handler, the body's reading included."""

    connections: int
    idle: float
    request: float


@dataclass(slots=True)
class _Connection:
    transport: asyncio.BaseTransport
    due: float  # closed at this loop time unless a request is being handled
    busy: int = 0


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
    thread, within `limits`. `start` returns once connections are accepted.

    The accept loop is our own rather than aiohttp's site: it counts connections, closes those
    past the cap at once, and outlives accept() failing for want of file descriptors. Either
    event is reported to `on_refused` (with a reason), since a delivery may have been lost.
    """

    def __init__(
        self,
        make_app: Callable[[], Awaitable[web.Application]],
        sock: socket.socket,
        name: str,
        limits: Limits,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._make_app = make_app
        self._sock = sock
        self._limits = limits
        self._on_refused = on_refused
        self._connections: dict[object, _Connection] = {}  # by protocol (aiohttp's handler)
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

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._handle(request, handler)

        app = await self._make_app()
        app.middlewares.append(track)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=GRACE_SECONDS,
            keepalive_timeout=self._limits.idle,
        )
        await runner.setup()
        loops: list[asyncio.Task[None]] = []
        try:
            loops.append(asyncio.create_task(self._accept(runner.server)))
            loops.append(asyncio.create_task(self._sweep()))
            self._ready.set()
            await self._done.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            self._sock.close()
            await runner.cleanup()

    async def _accept(self, server: Any) -> None:
        loop = asyncio.get_running_loop()
        pause = ACCEPT_PAUSE[0]
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except ConnectionError:  # the client gave up before we took it
                continue
            except OSError as error:  # EMFILE and the like: rest, and never stop serving
                self._refused(f"accept failed: {error.strerror or error}")
                await asyncio.sleep(pause)
                pause = min(pause * 2, ACCEPT_PAUSE[1])
                continue
            pause = ACCEPT_PAUSE[0]
            self._close_idle(None)
            if len(self._connections) >= self._limits.connections:
                self._refused(f"{self._limits.connections} connections open")  # then closed
                conn.close()
                continue
            try:
                transport, protocol = await loop.connect_accepted_socket(server, conn)
            except OSError as error:
                self._refused(f"could not serve a connection: {error.strerror or error}")
                conn.close()
                continue
            self._connections[protocol] = _Connection(transport, loop.time() + self._limits.idle)

    async def _sweep(self) -> None:
        """Close connections past their deadline, a few times per `idle` period."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.05, self._limits.idle / 4))
            self._close_idle(loop.time())

    def _close_idle(self, now: float | None) -> None:
        """Forget closed connections and (given `now`) close those idle past their due time."""
        for key, conn in list(self._connections.items()):
            if conn.transport.is_closing():
                del self._connections[key]
            elif now is not None and conn.busy == 0 and now >= conn.due:
                conn.transport.close()
                del self._connections[key]

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: busy while handled (never closed as idle), done within `request`
        seconds however slowly its body comes, and its connection's idle clock restarted."""
        from aiohttp import web

        conn = self._connections.get(request.protocol)
        if conn is not None:
            conn.busy += 1
        deadline = asyncio.timeout(self._limits.request)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            late = web.Response(status=408)
            late.force_close()
            return late
        finally:
            if conn is not None:
                conn.busy -= 1
                conn.due = asyncio.get_running_loop().time() + self._limits.idle

    def _refused(self, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(reason)

    def start(self, timeout: float, what: str) -> None:
        """Returns once connections are accepted; raises RuntimeError naming `what` if not."""
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure or not self._thread.is_alive():
            self.stop()
            self._sock.close()
            cause = self._failure[0] if self._failure else None
            reason = f": {cause}" if cause else ""
            raise RuntimeError(f"{what} did not start{reason}") from cause

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
