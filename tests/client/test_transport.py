"""Retry decisions, Retry-After and error bodies: the pure parts of the transport layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from fluxclaw import errors, redaction
from fluxclaw.retries import RetryBudget, RetryPolicy, parse_retry_after
from fluxclaw.transport import (
    BearerAuth,
    error_from_response,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0.01", 0.01),
        (" 2 ", 2.0),
        ("-4", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_as_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=5), usegmt=True)
    earlier = format_datetime(NOW - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(later, NOW) == pytest.approx(5.0)
    assert parse_retry_after(earlier, NOW) == 0.0


def budget(policy: RetryPolicy, clock: list[float]) -> RetryBudget:
    return RetryBudget(policy, clock=lambda: clock[0], rng=lambda: 1.0)


def test_backoff_is_exponential_capped_and_bounded_in_count() -> None:
    clock = [0.0]
    b = budget(RetryPolicy(max_attempts=6, backoff_base=0.5, backoff_cap=2.0), clock)
    delays = [b.next_delay(errors.ServerError("boom")) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0, None]


def test_retry_after_wins_but_is_capped_and_time_is_bounded() -> None:
    clock = [0.0]
    b = budget(RetryPolicy(retry_after_cap=5.0, max_elapsed=8.0), clock)
    assert b.next_delay(errors.RateLimitError("slow down", retry_after=0.25)) == 0.25
    assert b.next_delay(errors.RateLimitError("slow down", retry_after=100)) == 5.0
    clock[0] = 7.0
    assert b.next_delay(errors.RateLimitError("slow down", retry_after=2)) is None


@pytest.mark.parametrize(
    "error",
    [
        errors.ValidationError("bad"),
        errors.AuthenticationError("who"),
        errors.ConflictError("other body"),
        errors.NotFoundError("gone"),
        errors.InsufficientCreditsError("broke"),
        errors.UnknownStatusError("odd"),
    ],
)
def test_client_errors_are_never_retried(error: errors.FluxclawError) -> None:
    assert budget(RetryPolicy(), [0.0]).next_delay(error) is None


def test_unsafe_calls_are_never_retried() -> None:
    assert budget(RetryPolicy(), [0.0]).next_delay(errors.NetworkError("x"), False) is None


def headers(**extra: str) -> httpx.Headers:
    return httpx.Headers({"X-Request-Id": "req-1", **extra})


def test_error_body_with_nested_error() -> None:
    body = b'{"error": {"code": "insufficient_credits", "message": "Balance too low"}}'
    error = error_from_response(402, headers(), body, what="POST /x")
    assert isinstance(error, errors.InsufficientCreditsError)
    assert error.code == "insufficient_credits"
    assert "Balance too low" in error.message
    assert error.request_id == "req-1"
    assert error.exit_code == 3


def test_error_body_with_field_errors() -> None:
    body = b'{"error": "Validation failed", "errors": {"prompt": ["is too short"]}}'
    error = error_from_response(422, headers(), body, what="POST /x")
    assert isinstance(error, errors.ValidationError)
    assert error.errors == {"prompt": ["is too short"]}
    assert "prompt: is too short" in str(error)


def test_error_body_with_flat_code() -> None:
    body = b'{"error": "Task not found", "code": "not_found"}'
    error = error_from_response(404, headers(**{"X-RunAPI-Task-Id": "t-1"}), body, what="GET /x")
    assert isinstance(error, errors.NotFoundError)
    assert (error.code, error.task_id, error.exit_code) == ("not_found", "t-1", 4)


def test_html_error_page_from_a_proxy() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = error_from_response(502, httpx.Headers(), page, what="GET /x")
    assert isinstance(error, errors.ServerError)
    assert "502 Bad Gateway" in str(error)


def test_rate_limit_carries_retry_after() -> None:
    error = error_from_response(
        429, headers(**{"Retry-After": "0.5"}), b'{"error": "slow"}', what="GET /x"
    )
    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 0.5
    assert error.exit_code == 6


def test_secrets_echoed_by_a_server_are_redacted() -> None:
    redaction.remember("sk-secret-123")
    body = b'{"error": "bad key sk-secret-123, or Bearer xsk-secret-123y"}'
    error = error_from_response(401, headers(), body, what="GET /x")
    assert "sk-secret-123" not in str(error) and "secret" not in error.message
    assert "bad key ***, or Bearer ***" in error.message


def test_a_short_key_is_masked_only_where_it_stands_alone() -> None:
    redaction.remember("e")  # the registry is this test's own (tests/conftest.py)
    text = "key e rejected; fluxclaw wait 6e3134bf-0000-4000-8000-00000000000e, (e)"
    assert redaction.scrub(text) == (
        "key *** rejected; fluxclaw wait 6e3134bf-0000-4000-8000-00000000000e, (***)"
    )


def test_bearer_auth_only_for_the_api_origin() -> None:
    auth = BearerAuth("sk-k", "http://127.0.0.1:8000")
    for url, expected in [
        ("http://127.0.0.1:8000/api/v1/me", True),
        ("http://127.0.0.1:9000/api/v1/me", False),
        ("https://127.0.0.1:8000/api/v1/me", False),
        ("http://example.com/api/v1/me", False),
    ]:
        request = httpx.Request("GET", url, headers={"Authorization": "Bearer stale"})
        sent = next(auth.auth_flow(request))
        assert ("Authorization" in sent.headers) is expected, url
    assert "sk-k" not in repr(auth)
