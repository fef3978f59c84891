"""Every invalid input of the contract is refused before any request leaves the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxclaw import ValidationError, contract

URL = "https://example.com/a.png"

# (case id, method, args, kwargs, field named in the message, value named in the message)
CASES: list[tuple[str, str, tuple[Any, ...], dict[str, Any], str, str]] = [
    ("unknown model", "generate", ("a red fox",), {"model": "ultra"}, "model", "ultra"),
    ("prompt too short", "generate", ("hi",), {}, "prompt", "2 characters"),
    ("prompt too long", "generate", ("x" * 5001,), {}, "prompt", "5001 characters"),
    ("prompt blank", "generate", ("   ",), {}, "prompt", "required"),
    ("ratio unknown", "generate", ("a red fox",), {"aspect_ratio": "5:4"}, "aspect_ratio", "5:4"),
    ("auto for t2i", "generate", ("a red fox",), {"aspect_ratio": "auto"}, "aspect_ratio", "auto"),
    (
        "max needs ratio",
        "generate",
        ("a red fox",),
        {"model": "max", "aspect_ratio": None},
        "aspect_ratio",
        "requires",
    ),
    (
        "max no auto",
        "remix",
        ("a red fox", [URL]),
        {"model": "max", "aspect_ratio": "auto"},
        "aspect_ratio",
        "auto",
    ),
    (
        "resolution unknown",
        "generate",
        ("a red fox",),
        {"resolution": "4k"},
        "output_resolution",
        "4k",
    ),
    (
        "max only 1k",
        "generate",
        ("a red fox",),
        {"model": "max", "resolution": "2k"},
        "output_resolution",
        "2k",
    ),
    (
        "count for pro",
        "generate",
        ("a red fox",),
        {"extra_body": {"output_count": 1}},
        "output_count",
        "must not include",
    ),
    (
        "count above 1",
        "generate",
        ("a red fox",),
        {"model": "max", "extra_body": {"output_count": 2}},
        "output_count",
        "2",
    ),
    (
        "checker for max",
        "generate",
        ("a red fox",),
        {"model": "max", "safety_checker": True},
        "enable_safety_checker",
        "must not include",
    ),
    (
        "checker not bool",
        "generate",
        ("a red fox",),
        {"safety_checker": "yes"},
        "enable_safety_checker",
        "yes",
    ),
    ("no sources", "remix", ("a red fox", []), {}, "source_image_urls", "0"),
    ("nine sources", "remix", ("a red fox", [URL] * 9), {}, "source_image_urls", "9"),
    ("two for max", "remix", ("a red fox", [URL] * 2), {"model": "max"}, "source_image_urls", "2"),
    (
        "source not http",
        "remix",
        ("a red fox", ["ftp://example.com/a.png"]),
        {},
        "images[0]",
        "ftp://example.com/a.png",
    ),
    (
        "callback not http",
        "generate",
        ("a red fox",),
        {"callback_url": "not-a-url"},
        "callback_url",
        "not-a-url",
    ),
    (
        "unknown field",
        "generate",
        ("a red fox",),
        {"extra_body": {"seed": 7}},
        "seed",
        "not a field",
    ),
    (
        "long idempotency key",
        "generate",
        ("a red fox",),
        {"idempotency_key": "k" * 513},
        "idempotency_key",
        "512",
    ),
    (
        "bad client request id",
        "generate",
        ("a red fox",),
        {"client_request_id": "é\n"},
        "client_request_id",
        "printable",
    ),
    (
        "missing local file",
        "remix",
        ("a red fox", ["/nonexistent/cat.png"]),
        {},
        "images[0]",
        "/nonexistent/cat.png",
    ),
    ("task id not a uuid", "wait", ("../../me",), {}, "task_id", "../../me"),
    ("status id not a uuid", "status", ("123",), {}, "task_id", "123"),
    (
        "timeout not positive",
        "wait",
        ("123e4567-e89b-12d3-a456-426614174000",),
        {"timeout": 0},
        "timeout",
        "0",
    ),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "field", "value"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_invalid_input_raises_before_any_request(
    client: Any,
    sandbox: Any,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    field: str,
    value: str,
) -> None:
    with pytest.raises(ValidationError) as caught:
        getattr(client, method)(*args, **kwargs)
    message = str(caught.value)
    assert field.split("[")[0] in message or field in caught.value.errors
    assert value in message
    assert caught.value.exit_code == contract.EXIT_INVALID
    assert sandbox.requests() == []


def test_local_file_that_is_not_an_image(client: Any, sandbox: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(ValidationError, match="not a PNG, JPEG or WebP"):
        client.remix("a red fox", [notes])
    assert sandbox.requests() == []


def test_invalid_body_is_checked_before_uploading_local_files(
    client: Any, sandbox: Any, tmp_path: Path
) -> None:
    from PIL import Image

    path = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ValidationError, match="aspect_ratio=9:9"):
        client.remix("a red fox", [path], aspect_ratio="9:9")
    assert sandbox.requests() == []
