"""A callback receiver: RunAPI's POST when a task ends, taken as a hint and never as the truth.

How RunAPI signs callbacks is not published, so the body is not trusted: a callback only wakes
whoever waits for that task id, and the result is confirmed with an authenticated GET (by
`wait(..., receiver=...)`, or by the `confirm` function given here). Deliveries may repeat, so
every handler is idempotent, and the URL carries a secret token: a request without it gets 404.

    with CallbackServer() as server:            # on 127.0.0.1, in a background thread
        result = client.generate("a red fox", receiver=server)

The server is aiohttp's own (already a dependency of the client), so a plain install receives
callbacks; `CallbackReceiver` is also a plain ASGI app, to mount in a server of your own.

Anyone on the machine can connect to the receiver, so `CallbackServer` holds at most
MAX_CONNECTIONS and closes a connection idle for IDLE_SECONDS: it cannot take the file descriptors
the process needs to save what it paid for. When it could not take a connection (the cap, or no
file descriptor left) a delivery may be lost, so it says it is not `receiving` for a while, and
the waits poll on their ordinary schedule instead of waiting on callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from fluxclaw import contract
from fluxclaw._serving import NO_ROOM, AiohttpThread, Limits, Served

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("fluxclaw.callbacks")
MAX_BODY = 256 * 1024
# RunAPI delivers one short POST per finished task: a few connections at once is plenty.
MAX_CONNECTIONS: Final = 256
# A connection must complete a request this long after it opens or after its last answer.
IDLE_SECONDS: Final = 5.0
REQUEST_SECONDS: Final = 10.0  # one request, its body included
# After a connection was refused, how long the waits poll instead of trusting callbacks.
DEAF_SECONDS: Final = 60.0


class CallbackReceiver:
    """An ASGI app that records which tasks say they ended and wakes their waiters.

    `confirm(task_id)` (e.g. `client.get`, sync or async) is called once per task that a callback
    says ended; its answer lands in `confirmed` and is passed to `on_confirmed`.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        public_url: str | None = None,
        confirm: Callable[[str], Any] | None = None,
        on_confirmed: Callable[[Any], Any] | None = None,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.confirm = confirm
        self.on_confirmed = on_confirmed
        self.deliveries = 0
        self.rejected = 0
        self.refused = 0  # connections the server could not take (see `receiving`)
        self._deaf_until = float("-inf")
        self.confirmed: dict[str, Any] = {}
        self._ended: dict[str, str] = {}  # task id -> status the callback claimed
        self._confirming: set[str] = set()
        self._cond = threading.Condition()
        # Async waiters, each on its own loop: a callback resolves them without any thread.
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]]] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> str:
        return f"/callbacks/{self.token}"

    @property
    def callback_url(self) -> str | None:
        """The URL to give RunAPI (needs `public_url`, or a running `CallbackServer`)."""
        return f"{self.public_url}{self.path}" if self.public_url else None

    def __repr__(self) -> str:  # the token is a secret too
        return f"CallbackReceiver(public_url={self.public_url!r}, hints={len(self._ended)})"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app: POST /callbacks/<token>, whatever server runs it."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def chunks() -> Any:
            while True:
                message = await receive()
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        status, payload = await self._accept(
            scope["method"],
            scope["path"].removeprefix(scope.get("root_path", "")),  # mounted under a prefix
            headers.get("content-length", ""),
            chunks(),
        )
        body = b"" if payload is None else json.dumps(payload).encode()
        kind = [(b"content-type", b"application/json")] if payload is not None else []
        await send({"type": "http.response.start", "status": status, "headers": kind})
        await send({"type": "http.response.body", "body": body})

    async def _aiohttp(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        status, payload = await self._accept(
            request.method,
            request.path,
            request.headers.get("content-length", ""),
            request.content.iter_chunked(64 * 1024),
        )
        if payload is None:
            return web.Response(status=status)
        return web.json_response(payload, status=status)

    async def aiohttp_app(self) -> web.Application:
        """This receiver as an aiohttp application (what `CallbackServer` serves)."""
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._aiohttp)
        return app

    @property
    def receiving(self) -> bool:
        """False while a delivery may have been lost (a connection was refused lately): a wait
        then polls on its own schedule, as a missed callback would otherwise cost it dearly."""
        return time.monotonic() >= self._deaf_until

    def refuse(self, reason: str, *, seconds: float = DEAF_SECONDS) -> None:
        """The server could not take a connection: stop `receiving` for `seconds`, and wake
        every waiter (with False) so that it polls from now on."""
        with self._cond:
            self.refused += 1
            was = self.receiving
            self._deaf_until = max(self._deaf_until, time.monotonic() + seconds)
            if not was:
                return
            self._cond.notify_all()
            waiters = [entry for entries in self._waiters.values() for entry in entries]
            self._waiters.clear()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, future, False)
        log.warning(
            "the callback receiver cannot take every delivery (%s): polling instead", reason
        )

    def hinted(self, task_id: str) -> bool:
        with self._cond:
            return task_id in self._ended

    def hints(self) -> dict[str, str]:
        with self._cond:
            return dict(self._ended)

    def wait_for(self, task_id: str, timeout: float) -> bool:
        """Block until a callback says `task_id` ended (True), or `timeout` passes or the
        receiver stops `receiving` (False)."""
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while task_id not in self._ended and self.receiving:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return task_id in self._ended

    async def await_for(self, task_id: str, timeout: float) -> bool:
        """`wait_for` for asyncio: thousands of waits cost a future each, not a thread each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        entry = (loop, future)
        with self._cond:
            if task_id in self._ended or not self.receiving:
                return task_id in self._ended
            self._waiters.setdefault(task_id, []).append(entry)
        try:
            return await asyncio.wait_for(future, max(0.0, timeout))
        except TimeoutError:
            return self.hinted(task_id)
        finally:
            with self._cond:
                waiting = self._waiters.get(task_id, [])
                if entry in waiting:
                    waiting.remove(entry)
                if not waiting:
                    self._waiters.pop(task_id, None)

    async def _accept(
        self, method: str, path: str, declared: str, chunks: Any
    ) -> tuple[int, dict[str, Any] | None]:
        """One delivery, from any server: (status, JSON answer or None for an empty body)."""
        token = path.removeprefix("/callbacks/") if path.startswith("/callbacks/") else None
        if token is None or not secrets.compare_digest(token.encode(), self.token.encode()):
            self.rejected += 1
            return 404, None
        if method != "POST":
            return 405, None
        if declared.isdigit() and int(declared) > MAX_BODY:
            return 413, {"error": "callback body too large"}
        body = bytearray()
        async for chunk in chunks:  # read no further than MAX_BODY, whatever it says
            body += chunk
            if len(body) > MAX_BODY:
                return 413, {"error": "callback body too large"}
        try:
            data = json.loads(body)
            task_id = str(uuid.UUID(str(data["id"])))
            status = str(data["status"])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "not a task callback"}
        with self._cond:
            self.deliveries += 1
            repeated = task_id in self._ended
            start_confirm = False
            if status in contract.TERMINAL_STATUSES or status not in contract.STATUSES:
                self._ended[task_id] = status
                fresh = task_id not in self.confirmed and task_id not in self._confirming
                if self.confirm is not None and fresh:
                    self._confirming.add(task_id)
                    start_confirm = True
                self._cond.notify_all()
                for loop, future in self._waiters.pop(task_id, []):
                    loop.call_soon_threadsafe(_resolve, future, True)
        log.debug("callback for task %s (%s)%s", task_id, status, " again" if repeated else "")
        if start_confirm:  # after answering: RunAPI's delivery does not wait on our GET
            confirming = asyncio.get_running_loop().create_task(self._confirm(task_id))
            self._background.add(confirming)
            confirming.add_done_callback(self._background.discard)
        return 200, {"ok": True, "repeated": repeated}

    async def _confirm(self, task_id: str) -> None:
        assert self.confirm is not None
        try:
            if inspect.iscoroutinefunction(self.confirm):
                outcome = await self.confirm(task_id)
            else:  # a blocking GET (`client.get`) must not hold the server's loop
                outcome = await asyncio.to_thread(self.confirm, task_id)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
            done = getattr(outcome, "done", True)
            if done:
                with self._cond:
                    self.confirmed[task_id] = outcome
                if self.on_confirmed is not None:
                    handled = self.on_confirmed(outcome)
                    if inspect.isawaitable(handled):
                        await handled
        except Exception as exc:  # the wait confirms by polling anyway
            log.warning("could not confirm the callback for task %s: %s", task_id, type(exc))
            log.debug("the confirmation's error", exc_info=True)
        finally:
            with self._cond:
                self._confirming.discard(task_id)


class CallbackServer(Served):
    """Serves a `CallbackReceiver` with aiohttp on a background thread (127.0.0.1 by default).

    `callback_url` is the local URL unless `public_url` says how the outside reaches it. At most
    `max_connections` are open at once, each closed after `idle_seconds` without a request.
    """

    def __init__(
        self,
        receiver: CallbackReceiver | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        if max_connections < 1 or not idle_seconds > 0:
            raise ValueError("max_connections must be 1 or more and idle_seconds above 0.")
        self.receiver = receiver or CallbackReceiver()
        self.host = host
        self.port = port
        self._public = public_url
        self.limits = Limits(max_connections, idle_seconds, REQUEST_SECONDS)

    @property
    def callback_url(self) -> str | None:
        return self.receiver.callback_url

    @property
    def receiving(self) -> bool:
        return self.receiver.receiving

    def wait_for(self, task_id: str, timeout: float) -> bool:
        return self.receiver.wait_for(task_id, timeout)

    async def await_for(self, task_id: str, timeout: float) -> bool:
        return await self.receiver.await_for(task_id, timeout)

    def start(self) -> str:
        """Listen; a process out of file descriptors gets a server that never `receiving`
        (the waits poll), not an error: the tasks it waits on may be paid already."""

        def runner(sock: Any, name: str) -> AiohttpThread:
            return AiohttpThread(
                self.receiver.aiohttp_app, sock, name, self.limits, self.receiver.refuse
            )

        try:
            self._serve(runner, "callback server", 10)
        except (OSError, RuntimeError) as error:
            cause = error if isinstance(error, OSError) else error.__cause__
            if not (isinstance(cause, OSError) and cause.errno in NO_ROOM):
                raise
            self.receiver.refuse(f"it could not start: {cause.strerror}", seconds=float("inf"))
        self.receiver.public_url = (self._public or self.base_url).rstrip("/")
        return self.base_url

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"CallbackServer(base_url={self.base_url!r})"


def _resolve(future: asyncio.Future[bool], hinted: bool) -> None:
    if not future.done():
        future.set_result(hinted)
