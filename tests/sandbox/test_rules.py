"""Every contract rule, violated over HTTP: status code, error shape, field and message."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from fluxclaw import contract

from .conftest import MAX, MAX_REMIX, PRO, PRO_REMIX, REMIX, T2I

URL = "https://example.com/a.png"

# (id, path, body, field, words the message must contain)
RULES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("model-required", T2I, {"prompt": "a cat"}, "model", "model is required"),
    ("model-blank-is-absent", T2I, {"model": "  ", "prompt": "a cat"}, "model", "is required"),
    ("model-unknown", T2I, {"model": "flux-3", "prompt": "a cat"}, "model", "not a Flux 2 model"),
    (
        "model-of-other-action",
        T2I,
        {"model": PRO_REMIX, "prompt": "a cat"},
        "model",
        "does not belong to text_to_image",
    ),
    ("prompt-required", T2I, {"model": PRO}, "prompt", "prompt is required"),
    ("prompt-blank-is-absent", T2I, {"model": PRO, "prompt": "   "}, "prompt", "is required"),
    ("prompt-too-short", T2I, {"model": PRO, "prompt": "ab"}, "prompt", "has 2 characters"),
    ("prompt-too-long", T2I, {"model": PRO, "prompt": "x" * 5001}, "prompt", "has 5001"),
    ("prompt-not-string", T2I, {"model": PRO, "prompt": 12345}, "prompt", "must be a string"),
    (
        "ratio-not-allowed",
        T2I,
        {"model": PRO, "prompt": "a cat", "aspect_ratio": "5:4"},
        "aspect_ratio",
        "aspect_ratio=5:4 is not allowed",
    ),
    (
        "auto-only-for-remix",
        T2I,
        {"model": PRO, "prompt": "a cat", "aspect_ratio": "auto"},
        "aspect_ratio",
        "aspect_ratio=auto is not allowed",
    ),
    ("max-requires-ratio", T2I, {"model": MAX, "prompt": "a cat"}, "aspect_ratio", "requires"),
    (
        "max-remix-no-auto",
        REMIX,
        {"model": MAX_REMIX, "prompt": "a cat", "aspect_ratio": "auto", "source_image_urls": [URL]},
        "aspect_ratio",
        "aspect_ratio=auto is not allowed for model=flux-2-max-remix-image",
    ),
    (
        "resolution-not-allowed",
        T2I,
        {"model": PRO, "prompt": "a cat", "output_resolution": "4k"},
        "output_resolution",
        "output_resolution=4k is not allowed",
    ),
    (
        "max-1k-only",
        T2I,
        {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "output_resolution": "2k"},
        "output_resolution",
        "use 1k",
    ),
    (
        "output-count-max-only",
        T2I,
        {"model": PRO, "prompt": "a cat", "output_count": 1},
        "output_count",
        "model=flux-2-pro-text-to-image must not include output_count.",
    ),
    (
        "output-count-only-1",
        T2I,
        {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "output_count": 2},
        "output_count",
        "output_count=2 is not allowed; use 1.",
    ),
    (
        "safety-checker-not-for-max",
        T2I,
        {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "enable_safety_checker": True},
        "enable_safety_checker",
        "must not include enable_safety_checker",
    ),
    (
        "safety-checker-boolean",
        T2I,
        {"model": PRO, "prompt": "a cat", "enable_safety_checker": "yes"},
        "enable_safety_checker",
        "must be true or false",
    ),
    (
        "sources-required",
        REMIX,
        {"model": PRO_REMIX, "prompt": "a cat"},
        "source_image_urls",
        "source_image_urls is required",
    ),
    (
        "sources-a-list",
        REMIX,
        {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": URL},
        "source_image_urls",
        "must be a list",
    ),
    (
        "sources-at-most-8",
        REMIX,
        {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": [URL] * 9},
        "source_image_urls",
        "has 9 URLs",
    ),
    (
        "max-exactly-one-source",
        REMIX,
        {
            "model": MAX_REMIX,
            "prompt": "a cat",
            "aspect_ratio": "1:1",
            "source_image_urls": [URL, URL],
        },
        "source_image_urls",
        "takes exactly 1",
    ),
    (
        "sources-http-urls",
        REMIX,
        {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": ["ftp://x/a.png"]},
        "source_image_urls",
        "is not an http(s) URL",
    ),
    (
        "sources-not-on-text-to-image",
        T2I,
        {"model": PRO, "prompt": "a cat", "source_image_urls": [URL]},
        "source_image_urls",
        "is not a field of text_to_image",
    ),
    (
        "callback-http-url",
        T2I,
        {"model": PRO, "prompt": "a cat", "callback_url": "not a url"},
        "callback_url",
        "must be an http(s) URL",
    ),
    (
        "unknown-field",
        T2I,
        {"model": PRO, "prompt": "a cat", "seed": 42},
        "seed",
        "seed is not a field of text_to_image",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "field", "words"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule_violation_is_422_with_the_contract_message(
    api: httpx.Client, sandbox: Any, path: str, body: dict[str, Any], field: str, words: str
) -> None:
    answer = api.post(path, json=body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"] == "Validation failed"
    assert field in error["errors"]
    assert any(words in message for message in error["errors"][field]), error
    action = "remix_image" if path == REMIX else "text_to_image"
    expected = [v.message for v in contract.validate_request(action, body) if v.field == field]
    assert error["errors"][field] == expected
    assert answer.headers[contract.H_REQUEST_ID]
    assert sandbox.tasks() == []


def test_the_page_routes_apply_the_same_rules(api: httpx.Client) -> None:
    answer = api.post(
        "/v1/text_to_image", json={"model": PRO, "prompt": "a cat", "output_count": 1}
    )
    assert answer.status_code == 422
    assert "output_count" in answer.json()["errors"]
    answer = api.post("/v1/remix_image", json={"model": PRO_REMIX, "prompt": "a cat"})
    assert answer.status_code == 422
    assert "source_image_urls" in answer.json()["errors"]


def test_null_and_blank_values_count_as_absent(api: httpx.Client) -> None:
    body = {
        "model": PRO,
        "prompt": "a cat on a mat",
        "aspect_ratio": None,
        "output_count": "",
        "callback_url": None,
    }
    answer = api.post(T2I, json=body)
    assert answer.status_code == 200, answer.text


def test_non_loopback_callback_url_is_refused(api: httpx.Client) -> None:
    body = {"model": PRO, "prompt": "a cat", "callback_url": "https://example.com/hook"}
    answer = api.post(T2I, json=body)
    assert answer.status_code == 422
    assert "loopback" in answer.json()["errors"]["callback_url"][0]


@pytest.mark.parametrize(
    ("content", "words"),
    [(b'{"model": "flux-2-pro', "not valid JSON"), (b'["a", "list"]', "must be a JSON object")],
    ids=["malformed-json", "not-an-object"],
)
def test_bad_bodies_are_400(api: httpx.Client, content: bytes, words: str) -> None:
    answer = api.post(T2I, content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "Validation failed" and words in body["errors"]["body"][0]


@pytest.mark.parametrize("header", [contract.H_IDEMPOTENCY_KEY, contract.H_CLIENT_REQUEST_ID])
def test_header_values_longer_than_512_are_400(api: httpx.Client, header: str) -> None:
    ok = api.post(T2I, json={"model": PRO, "prompt": "a cat"}, headers={header: "k" * 512})
    assert ok.status_code == 200
    answer = api.post(T2I, json={"model": PRO, "prompt": "a cat"}, headers={header: "k" * 513})
    assert answer.status_code == 400
    assert header in answer.json()["errors"]


@pytest.mark.parametrize("header", [contract.H_IDEMPOTENCY_KEY, contract.H_CLIENT_REQUEST_ID])
def test_header_values_must_be_printable_ascii(sandbox: Any, header: str) -> None:
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    body = b'{"model": "flux-2-pro-text-to-image", "prompt": "a cat"}'
    request = (
        (
            f"POST {T2I} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {sandbox.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        + header.encode()
        + b": caf\xe9\r\n\r\n"
        + body
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"printable ASCII" in answer
