"""Files: url, base64 and prepare/PUT/confirm; S3-like checks on the PUT; remixing an upload."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from fluxclaw import contract

from .conftest import REMIX, wait_done

FILE_KEYS = {"file_name", "url", "size_bytes", "mime_type", "created_at", "expires_at"}


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def upload(api: httpx.Client, data: bytes, name: str = "red.png") -> dict[str, Any]:
    checksum = base64.b64encode(hashlib.md5(data).digest()).decode()
    prepared = api.post(
        "/api/v1/files/prepare",
        json={"filename": name, "byte_size": len(data), "checksum": checksum},
    ).json()
    assert set(prepared) == {"signed_id", "upload_url", "headers"}
    assert prepared["headers"] == {"Content-Type": "image/png", "Content-MD5": checksum}
    put = httpx.put(
        prepared["upload_url"], content=data, headers=prepared["headers"], trust_env=False
    )
    assert put.status_code == 200
    confirmed: dict[str, Any] = api.post(
        "/api/v1/files/confirm", json={"signed_id": prepared["signed_id"]}
    ).json()
    return confirmed


def test_prepare_put_confirm_serves_the_bytes(api: httpx.Client, sandbox: Any) -> None:
    data = png((64, 48), (200, 10, 10))
    answer = upload(api, data)
    assert set(answer) == FILE_KEYS
    assert (answer["size_bytes"], answer["mime_type"]) == (len(data), "image/png")
    assert answer["expires_at"] > answer["created_at"]
    assert answer["url"].startswith(sandbox.base_url)
    assert httpx.get(answer["url"], trust_env=False).content == data
    put = next(r for r in sandbox.requests() if r["method"] == "PUT")
    assert put["authorization"] is False and put["status"] == 200


def test_put_with_authorization_or_wrong_md5_is_refused(api: httpx.Client) -> None:
    data = png((8, 8), (0, 0, 0))
    checksum = base64.b64encode(hashlib.md5(data).digest()).decode()
    prepared = api.post(
        "/api/v1/files/prepare",
        json={"filename": "a.png", "byte_size": len(data), "checksum": checksum},
    ).json()
    url, headers = prepared["upload_url"], prepared["headers"]
    with_auth = httpx.put(url, content=data, headers={**headers, "Authorization": "Bearer k"})
    assert with_auth.status_code == 400 and b"<Code>InvalidArgument</Code>" in with_auth.content
    wrong = bytes(reversed(data))
    bad_md5 = httpx.put(url, content=wrong, headers=headers, trust_env=False)
    assert bad_md5.status_code == 400 and b"BadDigest" in bad_md5.content
    other_type = httpx.put(url, content=data, headers={**headers, "Content-Type": "image/jpeg"})
    assert other_type.status_code == 403
    not_yet = api.post("/api/v1/files/confirm", json={"signed_id": prepared["signed_id"]})
    assert not_yet.status_code == 422
    assert httpx.put(url, content=data, headers=headers, trust_env=False).status_code == 200


def test_prepare_validates_its_fields(api: httpx.Client) -> None:
    answer = api.post(
        "/api/v1/files/prepare", json={"filename": "", "byte_size": 0, "checksum": "x"}
    )
    assert answer.status_code == 422
    assert set(answer.json()["errors"]) == {"filename", "byte_size", "checksum"}


def test_the_size_limit_is_the_contracts(api: httpx.Client) -> None:
    """The client refuses what the sandbox rejects: both read contract.UPLOAD_MAX_BYTES."""
    checksum = base64.b64encode(hashlib.md5(b"").digest()).decode()

    def prepare(size: int) -> httpx.Response:
        body = {"filename": "a.png", "byte_size": size, "checksum": checksum}
        return api.post("/api/v1/files/prepare", json=body)

    assert prepare(contract.UPLOAD_MAX_BYTES).status_code == 200
    too_big = prepare(contract.UPLOAD_MAX_BYTES + 1)
    assert too_big.status_code == 422
    assert str(contract.UPLOAD_MAX_BYTES) in too_big.json()["errors"]["byte_size"][0]


def test_base64_and_url_sources(api: httpx.Client, sandbox: Any) -> None:
    data = png((10, 10), (1, 2, 3))
    encoded = base64.b64encode(data).decode()
    answer = api.post(
        "/api/v1/files", json={"source": {"type": "base64", "data": encoded}, "file_name": "b.png"}
    )
    assert answer.status_code == 200 and set(answer.json()) == FILE_KEYS
    assert httpx.get(answer.json()["url"], trust_env=False).content == data
    remote = api.post(
        "/api/v1/files",
        json={"source": {"type": "url", "url": "https://example.com/x.png"}, "file_name": "x.png"},
    )
    assert remote.status_code == 200 and remote.json()["url"].startswith(sandbox.base_url)
    with Image.open(io.BytesIO(httpx.get(remote.json()["url"], trust_env=False).content)) as image:
        assert image.format == "PNG"  # a placeholder: the sandbox never fetched example.com
    copy = api.post("/api/v1/files", json={"source": {"type": "url", "url": answer.json()["url"]}})
    assert httpx.get(copy.json()["url"], trust_env=False).content == data
    bad = api.post("/api/v1/files", json={"source": {"type": "base64", "data": "***"}})
    assert bad.status_code == 422


@pytest.mark.parametrize("size", [(320, 180), (180, 320)])
def test_remix_derives_from_an_uploaded_file(api: httpx.Client, size: tuple[int, int]) -> None:
    red = upload(api, png(size, (230, 20, 20)))
    body = {
        "model": "flux-2-pro-remix-image",
        "prompt": "the same, but at dusk",
        "aspect_ratio": "auto",
        "source_image_urls": [red["url"], "https://example.com/never-fetched.png"],
    }
    task_id = api.post(REMIX, json=body).json()["id"]
    url = wait_done(api, f"{REMIX}/{task_id}")["images"][0]["url"]
    with Image.open(io.BytesIO(httpx.get(url, trust_env=False).content)) as image:
        ratio = "16:9" if size[0] > size[1] else "9:16"
        assert image.size == contract.image_size(ratio, "1k")
        r, g, b = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert r > 120 and r > g + 60 and r > b + 60  # the red source shows through the tint
