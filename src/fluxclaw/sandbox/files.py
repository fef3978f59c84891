"""File routes: upload by URL or base64, the prepare/PUT/confirm flow, and serving /_files.

The PUT is checked the way S3 checks a presigned upload (exact signed headers, MD5, size, no
Authorization), since those are the mistakes a client makes against the real service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import mimetypes
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fluxclaw import contract, credentials
from fluxclaw.sandbox.renders import Renders
from fluxclaw.sandbox.responses import (
    base_url,
    json_body,
    json_response,
    not_found,
    validation_error,
)
from fluxclaw.sandbox.state import PendingUpload, SandboxState, StoredFile


class _Files:
    def __init__(self, state: SandboxState, renders: Renders) -> None:
        self.state = state
        self.renders = renders

    def store(self, name: str, data: bytes) -> StoredFile:
        stored = StoredFile(
            id=uuid.uuid4().hex,
            file_name=name,
            data=data,
            mime_type=sniff_mime(data, name),
            created_at=time.time(),
        )
        self.state.files[stored.id] = stored
        return stored

    async def create(self, request: Request) -> Response:
        body = await json_body(request)
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
            data = await asyncio.to_thread(self.renders.url_bytes, str(url), base_url(request))
            return file_answer(self.store(str(name), data), request)
        raw = source.get("data")
        if not isinstance(raw, str) or not raw:
            return validation_error({"source.data": ["source.data must be base64 text."]})
        if raw.startswith("data:") and "," in raw:
            raw = raw.split(",", 1)[1]
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return validation_error({"source.data": ["source.data is not valid base64."]})
        limit = contract.UPLOAD_MAX_BYTES
        if not data or len(data) > limit:
            return validation_error(
                {"source.data": [f"source.data must decode to 1 to {limit} bytes."]}
            )
        return file_answer(self.store(str(name or "file"), data), request)

    async def prepare(self, request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        errors: dict[str, list[str]] = {}
        filename, size, checksum = body.get("filename"), body.get("byte_size"), body.get("checksum")
        limit = contract.UPLOAD_MAX_BYTES
        if not isinstance(filename, str) or not filename.strip():
            errors["filename"] = ["filename is required."]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= limit:
            errors["byte_size"] = [f"byte_size must be 1 to {limit}."]
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
                "upload_url": f"{base_url(request)}/_uploads/{signed_id}",
                "headers": {"Content-Type": content_type, "Content-MD5": checksum},
            }
        )

    async def upload(self, request: Request) -> Response:
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
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        signed_id = body.get("signed_id")
        pending = self.state.uploads.get(signed_id) if isinstance(signed_id, str) else None
        if pending is None:
            return validation_error({"signed_id": ["signed_id is unknown."]})
        if pending.data is None:
            return validation_error({"signed_id": ["Nothing was uploaded for this signed_id."]})
        del self.state.uploads[pending.signed_id]
        return file_answer(self.store(pending.filename, pending.data), request)

    async def download(self, request: Request) -> Response:
        stored = self.state.files.get(request.path_params["file_id"])
        if stored is None or stored.expires_at < time.time():
            return not_found("File not found")
        return Response(stored.data, 200, media_type=stored.mime_type)


def file_answer(stored: StoredFile, request: Request) -> Response:
    url = f"{base_url(request)}/_files/{stored.id}/{quote(stored.file_name)}"
    return json_response(
        {
            "file_name": stored.file_name,
            "url": url,
            "size_bytes": len(stored.data),
            "mime_type": stored.mime_type,
            "created_at": _iso(stored.created_at),
            "expires_at": _iso(stored.expires_at),
        }
    )


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body.encode(), status, media_type="application/xml")


def sniff_mime(data: bytes, name: str) -> str:
    """The type the bytes say (the formats a remix takes), else the one the name says."""
    found = credentials.sniff(data)
    if found is not None:
        return found
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _is_md5_base64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def routes(state: SandboxState) -> list[Route]:
    files = _Files(state, Renders(state))
    return [
        Route(contract.FILES_PATH, files.create, methods=["POST"]),
        Route(contract.FILES_PREPARE_PATH, files.prepare, methods=["POST"]),
        Route(contract.FILES_CONFIRM_PATH, files.confirm, methods=["POST"]),
        Route("/_files/{file_id}/{name}", files.download),
        Route("/_uploads/{signed_id}", files.upload, methods=["PUT"]),
    ]
