"""The sandbox's HTTP face: a Starlette app behind one pure-ASGI middleware.

The middleware does what every request needs (request id, request log, header checks, faults,
auth, rate limit) without BaseHTTPMiddleware's per-request task and stream overhead, so a status
poll costs little more than a dictionary lookup and one json.dumps. Handlers use plain dicts, not
pydantic models, for the same reason. Rules come from fluxclaw.contract only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxclaw import contract
from fluxclaw.sandbox import images
from fluxclaw.sandbox.callbacks import CallbackSender, is_loopback_url
from fluxclaw.sandbox.state import (
    ConfigError,
    IdempotencyConflict,
    InsufficientCredits,
    PendingUpload,
    SandboxState,
    StoredFile,
    Task,
)

ABORT_EXTENSION: Final = "fluxclaw.abort"
MAX_BODY_BYTES: Final = 40 * 1024 * 1024
MAX_FILE_BYTES: Final = 25 * 1024 * 1024
HTML_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
GARBAGE: Final = b'{"id": "00000000-0000-4000-8000-0000000000", "status": "proc'
CREATE_PATHS: Final[dict[str, contract.Action]] = {
    "/api/v1/flux_2/text_to_image": "text_to_image",
    "/api/v1/flux_2/remix_image": "remix_image",
    "/v1/text_to_image": "text_to_image",
    "/v1/remix_image": "remix_image",
}
OPEN_API_PATHS: Final = frozenset({"/api/v1/price_schedules", "/api/v1/price_quotes"})


# ---------------------------------------------------------------------------------------------
# Answers


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, "application/json")


def validation_error(errors: dict[str, list[str]], status: int = 422) -> Response:
    return json_response({"error": "Validation failed", "errors": errors}, status)


def coded_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def not_found(what: str = "Task not found") -> Response:
    return json_response({"error": what, "code": "not_found"}, 404)


def seconds_header(seconds: float) -> str:
    """Retry-After in seconds; a decimal when below one second (a fast sandbox is fast)."""
    seconds = max(0.01, seconds)
    if seconds >= 1:
        return str(round(seconds))
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _printable(value: bytes) -> bool:
    return all(0x20 <= byte < 0x7F for byte in value)


# ---------------------------------------------------------------------------------------------
# Middleware


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
        extra = [(b"x-request-id", request_id.encode())]
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
        if not (path.startswith("/api/") or path.startswith("/v1/")):
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
            who = token or (client[0] if client else "anonymous")
            wait = state.take_token(who, time.time())
            if wait > 0:
                limit = state.config.rate_limit
                answer = coded_error(
                    429,
                    "rate_limited",
                    f"Rate limit of {limit:g} requests per second exceeded; retry later.",
                    {contract.H_RETRY_AFTER: seconds_header(wait)},
                )
                await answer(scope, receive, send_with_headers)
                return

        scope["fluxclaw.api_key"] = token or ""
        with contextlib.suppress(ClientDisconnect):  # the client left mid-body: nobody to answer
            await self._api(scope, receive, send_with_headers, entry)

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

    def _authorized(self, token: str | None) -> bool:
        if token is None:
            return False
        expected = self.state.api_key
        return expected is None or hmac.compare_digest(token.encode(), expected.encode())

    async def _fault(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        speed = self.state.config.speed
        if kind == "500":
            answer = coded_error(500, "server_error", "Internal server error (sandbox fault).")
        elif kind == "503":
            answer = coded_error(
                503, "service_unavailable", "Service temporarily unavailable (sandbox fault)."
            )
        elif kind == "429":
            answer = coded_error(
                429,
                "rate_limited",
                "Too many requests (sandbox fault).",
                {contract.H_RETRY_AFTER: seconds_header(max(0.01, 1 / speed))},
            )
        elif kind == "garbage":
            answer = Response(GARBAGE, 200, media_type="application/json")
        elif kind == "html":
            answer = Response(HTML_PAGE, 502, media_type="text/html")
        elif kind == "drop" and scope["method"] == "POST" and scope["path"] in CREATE_PATHS:
            # The task is made (and its idempotency key recorded); only the answer is lost.
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            await abort(scope, receive, send)
            return
        else:  # reset, or drop on a request that creates nothing
            await abort(scope, receive, send)
            return
        await answer(scope, receive, send)


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


# ---------------------------------------------------------------------------------------------
# Handlers


Handler = Callable[[Request], Awaitable[Response]]


class Handlers:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def base_url(request: Request) -> str:
        host = request.headers.get("host")
        if not host:
            server = request.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{request.url.scheme}://{host}"

    @staticmethod
    async def json_body(request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return validation_error({"body": ["The request body is too large."]}, 400)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return validation_error({"body": ["The request body is not valid JSON."]}, 400)
        if not isinstance(body, dict):
            return validation_error({"body": ["The request body must be a JSON object."]}, 400)
        return body

    def task_response(self, task: Task, body: dict[str, Any], status: str) -> Response:
        headers = {contract.H_TASK_ID: task.id}
        if self.state.config.retry_after and status not in contract.TERMINAL_STATUSES:
            headers[contract.H_RETRY_AFTER] = seconds_header(task.finished_at - time.time())
        return Response(dumps(body), 200, headers, "application/json")

    # -- tasks --------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        action = CREATE_PATHS[request.url.path]
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        errors: dict[str, list[str]] = {}
        for violation in contract.validate_request(action, body):
            errors.setdefault(violation.field, []).append(violation.message)
        callback = body.get("callback_url")
        if (
            "callback_url" not in errors
            and contract.is_present(callback)
            and not is_loopback_url(str(callback))
        ):
            errors["callback_url"] = [
                f"callback_url={callback} is refused: the sandbox only calls loopback hosts "
                "(127.0.0.1, ::1, localhost)."
            ]
        if errors:
            return validation_error(errors)

        state = self.state
        api_key: str = request.scope.get("fluxclaw.api_key", "")
        key = request.headers.get(contract.H_IDEMPOTENCY_KEY)
        if key is not None:
            try:
                replay = state.find_replay(api_key, key, action, body)
            except IdempotencyConflict as conflict:
                return coded_error(409, "idempotency_conflict", str(conflict))
            if replay is not None:
                status = state.status(replay, time.time())
                answer = {**replay.envelope(status), "task_replayed": True}
                self._note_task(request, replay)
                return self.task_response(replay, answer, status)
        try:
            task = state.create_task(
                action,
                body,
                api_key=api_key,
                base_url=self.base_url(request),
                idempotency_key=key,
            )
        except InsufficientCredits as error:
            return coded_error(402, "insufficient_credits", str(error))
        self._note_task(request, task)
        status = state.status(task, time.time())
        return self.task_response(task, task.envelope(status), status)

    @staticmethod
    def _note_task(request: Request, task: Task) -> None:
        entry = request.scope.get("fluxclaw.log")
        if entry is not None:
            entry["task_id"] = task.id

    def status_handler(self, action: contract.Action | None) -> Handler:
        state = self.state

        async def status(request: Request) -> Response:
            task = state.tasks.get(request.path_params["task_id"])
            if task is None or (action is not None and task.action != action):
                return not_found()
            current = state.status(task, time.time())
            return self.task_response(task, task.envelope(current), current)

        return status

    # -- images and files ---------------------------------------------------------------------

    async def image(self, request: Request) -> Response:
        task = self.state.tasks.get(request.path_params["task_id"])
        if (
            task is None
            or request.path_params["name"] != "0.png"
            or self.state.status(task, time.time()) != "completed"
        ):
            return not_found("Image not found")
        data = await asyncio.to_thread(self.render, task)
        return Response(
            data, 200, {"Cache-Control": "public, max-age=604800"}, media_type="image/png"
        )

    def render(self, task: Task, depth: int = 0) -> bytes:
        """A task's PNG; runs in a worker thread so that the event loop keeps answering."""
        request = task.request
        sources = [
            self.source(str(url), task.base_url, depth)
            for url in request.get("source_image_urls") or []
        ]
        ratio = request.get("aspect_ratio")
        if not contract.is_present(ratio):
            ratio = contract.DEFAULT_ASPECT_RATIO
        if ratio == contract.AUTO_RATIO:
            known = sources[0].data if sources else None
            ratio = (images.source_ratio(known) if known else None) or contract.DEFAULT_ASPECT_RATIO
        size = contract.image_size(str(ratio), task.resolution)
        return self.state.images.get(str(request["prompt"]), size, sources)

    def source(self, url: str, base_url: str, depth: int) -> images.Source:
        """Bytes of a URL the sandbox issued, read from memory; other URLs are never fetched."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return images.Source(url)
        own = urlsplit(base_url)
        same_host = parts.netloc == own.netloc or (
            is_loopback_url(url) and is_loopback_url(base_url) and parts.port == own.port
        )
        if not same_host:
            return images.Source(url)
        segments = parts.path.split("/")
        if len(segments) >= 4 and segments[1] == "_files":
            stored = self.state.files.get(segments[2])
            if stored is not None:
                return images.Source(url, stored.data)
        if len(segments) == 4 and segments[1] == "_images" and depth < 4:
            made = self.state.tasks.get(segments[2])
            if made is not None and made.status_at(time.time()) == "completed":
                return images.Source(url, self.render(made, depth + 1))
        return images.Source(url)

    async def stored_file(self, request: Request) -> Response:
        stored = self.state.files.get(request.path_params["file_id"])
        if stored is None or stored.expires_at < time.time():
            return not_found("File not found")
        return Response(stored.data, 200, media_type=stored.mime_type)

    def file_answer(self, stored: StoredFile, request: Request) -> Response:
        url = f"{self.base_url(request)}/_files/{stored.id}/{quote(stored.file_name)}"
        return json_response(
            {
                "file_name": stored.file_name,
                "url": url,
                "size_bytes": len(stored.data),
                "mime_type": stored.mime_type,
                "created_at": iso(stored.created_at),
                "expires_at": iso(stored.expires_at),
            }
        )

    def store(
        self, name: str, data: bytes, mime: str | None, source_url: str | None = None
    ) -> StoredFile:
        stored = StoredFile(
            id=uuid.uuid4().hex,
            file_name=name,
            data=data,
            mime_type=mime or sniff_mime(data, name),
            created_at=time.time(),
            source_url=source_url,
        )
        self.state.files[stored.id] = stored
        return stored

    async def create_file(self, request: Request) -> Response:
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        source = body.get("source")
        name = body.get("file_name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            return validation_error({"file_name": ["file_name must be a non-empty string."]})
        if not isinstance(source, dict) or source.get("type") not in ("url", "base64"):
            return validation_error(
                {"source": ['source must be {"type": "url", ...} or {"type": "base64", ...}']}
            )
        if source["type"] == "url":
            url = source.get("url")
            if not contract.is_http_url(url):
                return validation_error({"source.url": ["source.url must be an http(s) URL."]})
            name = name or (urlsplit(str(url)).path.rsplit("/", 1)[-1] or "file")
            data = await asyncio.to_thread(self.url_bytes, str(url), self.base_url(request))
            stored = self.store(str(name), data, None, source_url=str(url))
            return self.file_answer(stored, request)
        raw = source.get("data")
        if not isinstance(raw, str) or not raw:
            return validation_error({"source.data": ["source.data must be base64 text."]})
        if raw.startswith("data:") and "," in raw:
            raw = raw.split(",", 1)[1]
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return validation_error({"source.data": ["source.data is not valid base64."]})
        if not data or len(data) > MAX_FILE_BYTES:
            return validation_error(
                {"source.data": [f"source.data must decode to 1 to {MAX_FILE_BYTES} bytes."]}
            )
        stored = self.store(str(name or "file"), data, None)
        return self.file_answer(stored, request)

    def url_bytes(self, url: str, base_url: str) -> bytes:
        """A sandbox-issued URL's bytes; for any other host, a placeholder naming the URL."""
        source = self.source(url, base_url, 0)
        if source.data is not None:
            return source.data
        return self.state.images.get(f"remote file: {url}", (512, 512))

    async def prepare(self, request: Request) -> Response:
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        errors: dict[str, list[str]] = {}
        filename, size, checksum = body.get("filename"), body.get("byte_size"), body.get("checksum")
        if not isinstance(filename, str) or not filename.strip():
            errors["filename"] = ["filename is required."]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_FILE_BYTES:
            errors["byte_size"] = [f"byte_size must be 1 to {MAX_FILE_BYTES}."]
        if not isinstance(checksum, str) or not _is_md5_base64(checksum):
            errors["checksum"] = ["checksum must be base64(md5(bytes))."]
        if errors:
            return validation_error(errors)
        assert isinstance(filename, str) and isinstance(size, int) and isinstance(checksum, str)
        signed_id = uuid.uuid4().hex
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self.state.uploads[signed_id] = PendingUpload(
            signed_id, filename, size, checksum, content_type
        )
        return json_response(
            {
                "signed_id": signed_id,
                "upload_url": f"{self.base_url(request)}/_uploads/{signed_id}",
                "headers": {"Content-Type": content_type, "Content-MD5": checksum},
            }
        )

    async def upload(self, request: Request) -> Response:
        """Checks a PUT the way S3 does: exact signed headers, MD5, size, and no Authorization."""
        pending = self.state.uploads.get(request.path_params["signed_id"])
        if pending is None:
            return s3_error(404, "NoSuchUpload", "The upload URL is unknown or expired.")
        headers = request.headers
        if "authorization" in headers:
            return s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; the upload URL is already signed, "
                "so do not send an Authorization header.",
            )
        if headers.get("content-type") != pending.content_type:
            return s3_error(
                403, "SignatureDoesNotMatch", "Content-Type differs from the signed one."
            )
        if headers.get("content-md5") != pending.checksum:
            return s3_error(
                403, "SignatureDoesNotMatch", "Content-MD5 differs from the signed one."
            )
        data = await request.body()
        if len(data) != pending.byte_size:
            return s3_error(400, "IncompleteBody", "The body size differs from the signed size.")
        if base64.b64encode(hashlib.md5(data).digest()).decode() != pending.checksum:
            return s3_error(400, "BadDigest", "The Content-MD5 you specified did not match.")
        pending.data = data
        return Response(b"", 200, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def confirm(self, request: Request) -> Response:
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        signed_id = body.get("signed_id")
        pending = self.state.uploads.get(signed_id) if isinstance(signed_id, str) else None
        if pending is None:
            return validation_error({"signed_id": ["signed_id is unknown."]})
        if pending.data is None:
            return validation_error({"signed_id": ["Nothing was uploaded for this signed_id."]})
        del self.state.uploads[pending.signed_id]
        stored = self.store(pending.filename, pending.data, pending.content_type)
        return self.file_answer(stored, request)

    # -- money and account --------------------------------------------------------------------

    def schedules(self) -> list[dict[str, Any]]:
        rows = []
        for model in contract.MODELS.values():
            overrides = {
                res: self.state.price_for(model, res)
                for res in (contract.RESOLUTIONS if model.family != "max" else ("1k",))
            }
            row: dict[str, Any] = {
                "service": contract.SERVICE,
                "action": model.action,
                "model": model.id,
                "currency": "USD",
                "unit": "image",
                "unit_price_cents": overrides[contract.DEFAULT_RESOLUTION],
                "billing_config": {"key": "output_resolution", "overrides": overrides},
            }
            if contract.price_cents(model.family, contract.DEFAULT_RESOLUTION) is None:
                row["note"] = "sandbox placeholder: RunAPI's price for this model is unknown"
            rows.append(row)
        return rows

    async def price_schedules(self, request: Request) -> Response:
        query = request.query_params
        rows = [
            row
            for row in self.schedules()
            if all(
                not query.get(name) or row[name] == query[name]
                for name in ("service", "action", "model")
            )
        ]
        body = dumps({"price_schedules": rows})
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        wanted = request.headers.get("if-none-match")
        if wanted is not None:
            tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
            if etag in tags or "*" in tags:
                return Response(b"", 304, headers)
        return Response(body, 200, headers, "application/json")

    async def price_quote(self, request: Request) -> Response:
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        service = body.pop("service", contract.SERVICE)
        action = body.pop("action", None)
        model = contract.MODELS.get(str(body.get("model")))
        if service != contract.SERVICE:
            return validation_error({"service": [f"service must be {contract.SERVICE}."]})
        if action is None and model is not None:
            action = model.action
        if action not in contract.ACTIONS:
            return validation_error(
                {"action": [f"action must be one of: {', '.join(contract.ACTIONS)}."]}
            )
        errors: dict[str, list[str]] = {}
        for violation in contract.validate_request(action, body):
            errors.setdefault(violation.field, []).append(violation.message)
        if errors or model is None:
            return validation_error(errors)
        resolution = body.get("output_resolution")
        if not contract.is_present(resolution):
            resolution = contract.DEFAULT_RESOLUTION
        cents = self.state.price_for(model, str(resolution))
        known = contract.price_cents(model.family, str(resolution)) is not None
        return json_response(
            {
                "price_quote": {
                    "service": contract.SERVICE,
                    "action": action,
                    "model": model.id,
                    "output_resolution": resolution,
                    "currency": "USD",
                    "unit_price_cents": cents,
                    "quantity": 1,
                    "reservation_amount_cents": cents,
                    "estimate_basis": "exact" if known else "sandbox_placeholder",
                }
            }
        )

    async def me(self, request: Request) -> Response:
        return json_response(
            {
                "id": "usr_sandbox",
                "name": "Sandbox User",
                "email": "sandbox@example.invalid",
                "account": {"id": "acct_sandbox", "name": "fluxclaw sandbox"},
            }
        )

    async def balance(self, request: Request) -> Response:
        state = self.state
        return json_response(
            {
                "balance_cents": state.balance_cents,
                "paid_balance_cents": state.balance_cents,
                "bonus_balance_cents": 0,
                "spent_cents_today": state.spent_today_cents(),
                "spent_cents_total": state.spent_cents,
            }
        )

    # -- inspection ---------------------------------------------------------------------------

    async def inspect_requests(self, request: Request) -> Response:
        return json_response({"requests": list(self.state.log)})

    async def inspect_ledger(self, request: Request) -> Response:
        state = self.state
        charges = [{k: v for k, v in c.items()} for c in state.charges]
        return json_response(
            {
                "balance_cents": state.balance_cents,
                "reserved_cents": state.reserved_cents,
                "spent_cents": state.spent_cents,
                "charges": charges,
            }
        )

    async def inspect_tasks(self, request: Request) -> Response:
        now = time.time()
        tasks = self.state.tasks.values()
        return json_response({"tasks": [self._inspect(task, now) for task in tasks]})

    def _inspect(self, task: Task, now: float) -> dict[str, Any]:
        self.state.status(task, now)
        return task.to_dict(now)

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            body = await self.json_body(request)
            if isinstance(body, Response):
                return body
            try:
                self.state.configure(body)
            except ConfigError as error:
                return validation_error({error.field: [str(error)]})
        return json_response({"config": self.state.config.to_dict()})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        if self.state.on_new_task is not None:
            self.state.on_new_task()
        return json_response({"reset": True})

    async def root(self, request: Request) -> Response:
        return json_response(
            {
                "service": "fluxclaw sandbox",
                "contract": "RunAPI Flux 2 (see fluxclaw.contract)",
                "inspection": ["/_sandbox/requests", "/_sandbox/ledger", "/_sandbox/tasks"],
            }
        )


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body.encode(), status, media_type="application/xml")


def sniff_mime(data: bytes, name: str) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _is_md5_base64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Background work: ending tasks on time


async def run_scheduler(state: SandboxState, wake: asyncio.Event) -> None:
    """End every task at its finish time (charge, callback) whether or not anyone polls."""
    while True:
        state.settle_due(time.time())
        due = state.next_due()
        wake.clear()
        timeout = None if due is None else max(0.0, due - time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


def create_app(state: SandboxState) -> Starlette:
    handlers = Handlers(state)
    sender = CallbackSender()

    def on_settle(task: Task) -> None:
        url = task.request.get("callback_url")
        if contract.is_present(url):
            envelope = task.envelope(task.status_at(task.finished_at))
            sender.send(str(url), envelope, task.callback_deliveries, state.config.speed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        wake = asyncio.Event()
        state.on_new_task = wake.set
        state.on_settle = on_settle
        scheduler = asyncio.get_running_loop().create_task(run_scheduler(state, wake))
        try:
            yield
        finally:
            state.on_new_task = None
            state.on_settle = None
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await sender.aclose()

    h = handlers
    flux = f"/api/v1/{contract.SERVICE}"
    routes = [
        Route(f"{flux}/text_to_image", h.create, methods=["POST"]),
        Route(f"{flux}/remix_image", h.create, methods=["POST"]),
        Route(f"{flux}/text_to_image/{{task_id}}", h.status_handler("text_to_image")),
        Route(f"{flux}/remix_image/{{task_id}}", h.status_handler("remix_image")),
        Route("/v1/text_to_image", h.create, methods=["POST"]),
        Route("/v1/remix_image", h.create, methods=["POST"]),
        Route("/v1/tasks/{task_id}", h.status_handler(None)),
        Route("/api/v1/files", h.create_file, methods=["POST"]),
        Route("/api/v1/files/prepare", h.prepare, methods=["POST"]),
        Route("/api/v1/files/confirm", h.confirm, methods=["POST"]),
        Route("/api/v1/price_schedules", h.price_schedules),
        Route("/api/v1/price_quotes", h.price_quote, methods=["POST"]),
        Route("/api/v1/me", h.me),
        Route("/api/v1/me/balance", h.balance),
        Route("/_images/{task_id}/{name}", h.image),
        Route("/_files/{file_id}/{name}", h.stored_file),
        Route("/_uploads/{signed_id}", h.upload, methods=["PUT"]),
        Route("/_sandbox/requests", h.inspect_requests),
        Route("/_sandbox/ledger", h.inspect_ledger),
        Route("/_sandbox/tasks", h.inspect_tasks),
        Route("/_sandbox/config", h.config, methods=["GET", "POST"]),
        Route("/_sandbox/reset", h.reset, methods=["POST"]),
        Route("/", h.root),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return json_response({"error": "Not found", "code": "not_found"}, 404)
        if status == 405:
            return json_response({"error": "Method not allowed", "code": "method_not_allowed"}, 405)
        return coded_error(status, "server_error", "Internal server error.")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: http_error},
    )
    app.add_middleware(SandboxMiddleware, state=state)
    app.state.sandbox = state
    return app
