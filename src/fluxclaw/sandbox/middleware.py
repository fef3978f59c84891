"""The per-request layer: request id, speed header, request log, header checks, auth, rate limit
and faults.

Every answer states the sandbox's current speed (`contract.H_SANDBOX_SPEED`), so a plain client
polls at the sandbox's pace from its first answer instead of the contract's real-time one. One
pure-ASGI middleware rather than BaseHTTPMiddleware, whose per-request task and stream would
cost more than a status poll itself; inspection routes (/_sandbox/) are neither logged nor checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxclaw import contract
from fluxclaw.sandbox.responses import coded_error, seconds_header, validation_error
from fluxclaw.sandbox.state import SandboxState
from fluxclaw.sandbox.tasks import CREATE_PATHS

ABORT_EXTENSION: Final = "fluxclaw.abort"
OPEN_API_PATHS: Final = contract.OPEN_PATHS
HTML_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
GARBAGE: Final = b'{"id": "00000000-0000-4000-8000-0000000000", "status": "proc'
_SPEED_HEADER: Final = contract.H_SANDBOX_SPEED.lower().encode()


class SandboxMiddleware:
    """Request id, request log, header checks, auth, rate limit and faults, in that order."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        path: str = scope["path"]
        request_id = "req_" + uuid.uuid4().hex
        auth = idem = client_id = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"idempotency-key":
                idem = value
            elif name == b"x-client-request-id":
                client_id = value
        extra = [
            (b"x-request-id", request_id.encode()),
            (_SPEED_HEADER, _speed_value(state.config.speed)),
        ]
        bad: dict[str, list[str]] = {}
        for header, value in (
            (contract.H_IDEMPOTENCY_KEY, idem),
            (contract.H_CLIENT_REQUEST_ID, client_id),
        ):
            if value is not None and (
                len(value) > contract.HEADER_VALUE_MAX or not value or not _printable(value)
            ):
                bad[header] = [
                    f"{header} must be 1 to {contract.HEADER_VALUE_MAX} printable ASCII characters."
                ]
        if client_id is not None and contract.H_CLIENT_REQUEST_ID not in bad:
            extra.append((b"x-client-request-id", client_id))

        entry: dict[str, Any] | None = None
        if not path.startswith("/_sandbox/"):
            entry = {
                "method": scope["method"],
                "path": path,
                "status": None,
                "idempotency_key": idem.decode("latin-1") if idem is not None else None,
                "time": time.time(),
                "fault": None,
                "authorization": auth is not None,
                "request_id": request_id,
            }
            state.log.append(entry)
            scope["fluxclaw.log"] = entry

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if entry is not None:
                    entry["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        if bad:
            await validation_error(bad, 400)(scope, receive, send_with_headers)
            return
        if not path.startswith((contract.API_PREFIX + "/", contract.PAGE_PREFIX + "/")):
            with contextlib.suppress(ClientDisconnect):
                await self.app(scope, receive, send_with_headers)
            return

        token = None
        if auth is not None and auth[:7].lower() == b"bearer ":
            token = auth[7:].strip().decode("latin-1") or None
        if path not in OPEN_API_PATHS and not self._authorized(token):
            message = "Missing or invalid API key: send Authorization: Bearer <RUNAPI_API_KEY>."
            answer = coded_error(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
            await answer(scope, receive, send_with_headers)
            return

        if state.config.rate_limit is not None:
            client = scope.get("client")
            wait = state.take_token(token or (client[0] if client else "anonymous"), time.time())
            if wait > 0:
                answer = coded_error(
                    429,
                    "rate_limited",
                    f"Rate limit of {state.config.rate_limit:g} requests per second exceeded; "
                    "retry later.",
                    {contract.H_RETRY_AFTER: seconds_header(wait)},
                )
                await answer(scope, receive, send_with_headers)
                return

        scope["fluxclaw.api_key"] = token or ""
        with contextlib.suppress(ClientDisconnect):  # the client left mid-body: nobody to answer
            await self._api(scope, receive, send_with_headers, entry)

    def _authorized(self, token: str | None) -> bool:
        if token is None:
            return False
        expected = self.state.api_key
        return expected is None or hmac.compare_digest(token.encode(), expected.encode())

    async def _api(
        self, scope: Scope, receive: Receive, send: Send, entry: dict[str, Any] | None
    ) -> None:
        state = self.state
        faults = state.config.faults
        if faults.active:
            kind = state.dice.request_fault(faults)
            delay = state.dice.slow_delay(faults)
            if entry is not None and (kind or delay):
                entry["fault"] = kind or "slow"
            if delay:
                await asyncio.sleep(delay)
            if kind is not None:
                await self._fault(kind, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _fault(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _fault_answer(kind, self.state.config.speed)
        if answer is not None:
            await answer(scope, receive, send)
            return
        if kind == "drop" and scope["method"] == "POST" and scope["path"] in CREATE_PATHS:
            # The task is made (and its idempotency key recorded); only the answer is lost.
            await self.app(scope, receive, _swallow)
        await abort(scope, receive, send)


def _fault_answer(kind: str, speed: float) -> Response | None:
    """The answer a fault kind sends instead of the real one; None for `reset` and `drop`."""
    if kind == "500":
        return coded_error(500, "server_error", "Internal server error (sandbox fault).")
    if kind == "503":
        return coded_error(
            503, "service_unavailable", "Service temporarily unavailable (sandbox fault)."
        )
    if kind == "429":
        return coded_error(
            429,
            "rate_limited",
            "Too many requests (sandbox fault).",
            {contract.H_RETRY_AFTER: seconds_header(1 / speed)},
        )
    if kind == "garbage":
        return Response(GARBAGE, 200, media_type="application/json")
    if kind == "html":
        return Response(HTML_PAGE, 502, media_type="text/html")
    return None


async def _swallow(message: Message) -> None:
    return None


async def abort(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the TCP connection without an answer (a reset, as a dying proxy would)."""
    kill: Callable[[], None] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if kill is None:  # not running under SandboxServer's protocol: the closest we can do
        answer = coded_error(500, "server_error", "Connection reset (sandbox fault).")
        await answer(scope, receive, send)
        return
    kill()
    while (await receive())["type"] != "http.disconnect":
        pass


@functools.lru_cache(maxsize=16)
def _speed_value(speed: float) -> bytes:
    """`100`, `2.5`: the shortest exact decimal (the speed changes rarely, so it is cached)."""
    return repr(speed).removesuffix(".0").encode()


def _printable(value: bytes) -> bool:
    return all(0x20 <= byte < 0x7F for byte in value)
