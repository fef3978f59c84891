"""Image bytes over the network: size-capped downloads, and uploads of local sources for remix.

Image hosts and upload URLs are other origins, so everything here goes through a plain httpx
client that has no Authorization header at all: redirects cannot leak the key because there is
no key to leak. Writing images to disk is `fluxclaw.saving`'s job.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

from fluxclaw import _deadlines, contract, errors, provenance
from fluxclaw.retries import RETRY_STATUSES
from fluxclaw.transport import Call, CappedBody, error_from_response, transport_error

ImageFormat = Literal["png", "jpeg", "webp"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")
EXTENSIONS: dict[str, ImageFormat] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
}
SUFFIX: dict[ImageFormat, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# Flux 2 images are a few MB (2k PNG: ~4 MP); 32 MiB is generous and bounds a download's memory.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_UPLOAD_BYTES = contract.UPLOAD_MAX_BYTES
CHUNK = 64 * 1024


def sniff(data: bytes) -> ImageFormat | None:
    """The image format from the first bytes; what a server calls it does not matter."""
    return provenance.image_format(data)


# ---------------------------------------------------------------------------------------------
# Downloads


def fetch(
    http: httpx.Client, url: str, max_bytes: int, task_id: str | None, deadline: float | None
) -> bytes:
    """One streamed, capped GET of an image, done by `deadline` (retries are the caller's:
    `_flows.download`)."""
    try:
        with _deadlines.bounded(deadline), http.stream("GET", url) as response:
            _check_download(response, url, task_id)
            data = _capped(response, url, max_bytes, task_id).read(response, CHUNK)
    except httpx.TransportError as exc:
        raise transport_error(exc, "image download", task_id) from exc
    return _checked_image(data, url, task_id)


async def afetch(
    http: httpx.AsyncClient, url: str, max_bytes: int, task_id: str | None, deadline: float | None
) -> bytes:
    import asyncio  # here, not at the top: a blocking process never pays for asyncio's import

    try:
        async with asyncio.timeout(_left(deadline)), http.stream("GET", url) as response:
            _check_download(response, url, task_id)
            data = await _capped(response, url, max_bytes, task_id).aread(response, CHUNK)
    except httpx.TransportError as exc:
        raise transport_error(exc, "image download", task_id) from exc
    except TimeoutError as exc:
        raise _late("image download", task_id) from exc
    return _checked_image(data, url, task_id)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _late(what: str, task_id: str | None) -> errors.RequestTimeoutError:
    return errors.RequestTimeoutError(
        f"{what} timed out (not done by its deadline)", task_id=task_id
    )


def _check_download(response: httpx.Response, url: str, task_id: str | None) -> None:
    if response.status_code != 200:
        error = error_from_response(
            response.status_code,
            response.headers,
            b"",  # an image host's error page says nothing useful; do not read it
            what="image download",
            task_id=task_id,
        )
        if response.status_code in RETRY_STATUSES:
            raise error  # retried: a 5xx or 429 from the image host
        hint = (
            "Image URLs expire after 7 days." if response.status_code in (403, 404, 410) else None
        )
        raise errors.DownloadError(
            f"image download failed ({response.status_code}): {short_url(url)}",
            status=response.status_code,
            task_id=task_id,
            hint=hint,
        )


def _capped(response: httpx.Response, url: str, max_bytes: int, task_id: str | None) -> CappedBody:
    what = f"image at {short_url(url)}"
    return CappedBody(
        response.headers, max_bytes, what=what, task_id=task_id, error=errors.DownloadError
    )


def _checked_image(data: bytes, url: str, task_id: str | None) -> bytes:
    if sniff(data) is None:
        raise errors.DownloadError(
            f"image download from {short_url(url)} is not a PNG, JPEG or WebP image",
            task_id=task_id,
        )
    return data


def download_failed(
    url: str, error: errors.FluxclawError, task_id: str | None
) -> errors.FluxclawError:
    if isinstance(error, errors.DownloadError):
        return error
    return errors.DownloadError(
        f"image download from {short_url(url)} failed: {error.message}",
        status=error.status,
        task_id=task_id,
    )


def short_url(url: str) -> str:
    return url.split("?", 1)[0]


# ---------------------------------------------------------------------------------------------
# Uploads (prepare with the API, PUT without Authorization, confirm with the API)


def read_source(source: str | os.PathLike[str] | bytes, index: int) -> tuple[bytes, str]:
    """Bytes and a file name for a local image given as a path or raw bytes; checked, not sent."""
    field = f"images[{index}]"
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        fmt = sniff(data)
        name = f"image-{index + 1}{SUFFIX[fmt] if fmt else ''}"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise errors.ValidationError(
                f"{field}={os.fspath(source)} is neither an http(s) URL nor an existing file.",
                errors={field: ["not found"]},
            )
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise errors.ValidationError(
                f"{field}={path} has {size} bytes; at most {MAX_UPLOAD_BYTES} are allowed.",
                errors={field: ["too large"]},
            )
        data = path.read_bytes()
        fmt = sniff(data)
        name = path.name
    if fmt is None:
        raise errors.ValidationError(
            f"{field} is not a PNG, JPEG or WebP image.", errors={field: ["not an image"]}
        )
    if len(data) > MAX_UPLOAD_BYTES:
        raise errors.ValidationError(
            f"{field} has {len(data)} bytes; at most {MAX_UPLOAD_BYTES} are allowed.",
            errors={field: ["too large"]},
        )
    return data, name


def prepare_call(data: bytes, filename: str) -> Call:
    checksum = base64.b64encode(hashlib.md5(data).digest()).decode()
    body = {"filename": filename, "byte_size": len(data), "checksum": checksum}
    return Call("POST", contract.FILES_PREPARE_PATH, json=body)


def confirm_call(signed_id: str) -> Call:
    return Call("POST", contract.FILES_CONFIRM_PATH, json={"signed_id": signed_id})


def upload_target(answer: Any) -> tuple[str, str, dict[str, str]]:
    """signed_id, upload_url and headers of a prepare answer, checked."""
    if not isinstance(answer, dict):
        raise errors.ServerError("files/prepare answered an unexpected body")
    signed_id, url, headers = (
        answer.get("signed_id"),
        answer.get("upload_url"),
        answer.get("headers"),
    )
    if not isinstance(signed_id, str) or not isinstance(url, str) or not url.startswith("http"):
        raise errors.ServerError("files/prepare answered without signed_id or upload_url")
    clean = {
        str(k): str(v) for k, v in (headers or {}).items() if str(k).lower() != "authorization"
    }
    return signed_id, url, clean


def file_url(answer: Any) -> str:
    if not isinstance(answer, dict) or not isinstance(answer.get("url"), str):
        raise errors.ServerError("files/confirm answered without a url")
    return str(answer["url"])


def put(
    http: httpx.Client,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    deadline: float | None = None,
) -> None:
    """One upload PUT (retries are the caller's: `_flows.upload`)."""
    try:
        with (
            _deadlines.bounded(deadline),
            http.stream("PUT", url, content=data, headers=dict(headers)) as response,
        ):
            _check_put(response)  # the body is never read: an upload host's page says little
    except httpx.TransportError as exc:
        raise transport_error(exc, "upload PUT", None) from exc


async def aput(
    http: httpx.AsyncClient,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    deadline: float | None = None,
) -> None:
    import asyncio

    try:
        async with (
            asyncio.timeout(_left(deadline)),
            http.stream("PUT", url, content=data, headers=dict(headers)) as response,
        ):
            _check_put(response)
    except httpx.TransportError as exc:
        raise transport_error(exc, "upload PUT", None) from exc
    except TimeoutError as exc:
        raise _late("upload PUT", None) from exc


def _check_put(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_from_response(response.status_code, response.headers, b"", what="upload PUT")
