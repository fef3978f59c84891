"""The answer shapes and request readers that every sandbox route shares.

Plain dicts and one compact json.dumps, not pydantic models, so that a status poll stays cheap;
one place for the error shapes so that every route fails the way RunAPI does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fluxclaw import contract

MAX_BODY_BYTES: Final = 40 * 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


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


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in the sandbox's JSON shape instead of plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return json_response({"error": "Not found", "code": "not_found"}, 404)
    if status == 405:
        return json_response({"error": "Method not allowed", "code": "method_not_allowed"}, 405)
    return coded_error(status, "server_error", "Internal server error.")


def seconds_header(seconds: float) -> str:
    """Retry-After in seconds; a decimal when below one second (a fast sandbox is fast)."""
    seconds = max(0.01, seconds)
    if seconds >= 1:
        return str(round(seconds))
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def request_errors(action: contract.Action, body: Mapping[str, Any]) -> dict[str, list[str]]:
    """The contract's violations of a task request, grouped by field as a 422 lists them."""
    errors: dict[str, list[str]] = {}
    for violation in contract.validate_request(action, body):
        errors.setdefault(violation.field, []).append(violation.message)
    return errors


def base_url(request: Request) -> str:
    """The URL the client reached the sandbox at, for the URLs it hands out."""
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.url.scheme}://{host}"


async def json_body(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object, or the 400 answer saying why it is not one."""
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
