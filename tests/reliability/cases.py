"""Every hostile or broken answer the reliability suite sends, by area, each a few lines."""

from __future__ import annotations

import asyncio
import json

from tests.reliability.hostile import (
    Case,
    Exchange,
    completed,
    drip,
    gzip_bomb,
    pixel_bomb,
    png,
    reset,
    silent,
    task,
)

MB = 1024 * 1024
OTHER_ID = "00000000-0000-4000-8000-000000000000"


async def _status_body(ex: Exchange, body: bytes, content_type: str = "application/json") -> None:
    await ex.send(200, body, headers={"Content-Type": content_type})


async def _chunked(ex: Exchange, piece: bytes, total: int, content_type: str) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ex.writer.write(head.encode())
    sent = 0
    while sent < total:
        ex.writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await ex.writer.drain()
        sent += len(piece)
    ex.writer.write(b"0\r\n\r\n")
    await ex.writer.drain()


def _json_head(length: int, extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    return (head + extra + "\r\n").encode()


async def _huge_declared(ex: Exchange) -> None:
    body = b'{"id": "x", "pad": "' + b"a" * (50 * MB) + b'"}'
    await _status_body(ex, body)


async def _huge_chunked(ex: Exchange) -> None:
    await _chunked(ex, b" " * (1 * MB), 50 * MB, "application/json")


async def _gzip_json(ex: Exchange) -> None:
    bomb = gzip_bomb()
    await ex.send(200, bomb, headers={"Content-Encoding": "gzip"})


async def _drip_body(ex: Exchange) -> None:
    body = json.dumps(task(ex, "processing")).encode()
    await drip(ex, _json_head(len(body)), body)


async def _drip_all(ex: Exchange) -> None:
    body = json.dumps(task(ex, "processing")).encode()
    await drip(ex, b"", _json_head(len(body)) + body)


async def _server_error(ex: Exchange) -> None:
    await ex.json(500, {"error": {"code": "internal", "message": "boom"}})


async def _html_502(ex: Exchange) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    await ex.send(502, page, headers={"Content-Type": "text/html"})


async def _redirect_api(ex: Exchange) -> None:
    other = ex.server.other
    assert other is not None
    await ex.send(302, b"", headers={"Location": f"{other.url}{ex.path}"})


async def _image_elsewhere(ex: Exchange) -> None:
    """Completed, with an image URL that redirects to another origin."""
    await completed(ex, f"{ex.server.url}/img/{ex.task_id}.png?hop=1")


async def _image_redirect(ex: Exchange) -> None:
    other = ex.server.other
    assert other is not None
    await ex.send(302, b"", headers={"Location": f"{other.url}/img/{ex.task_id}.png"})


async def _image_other_origin(ex: Exchange) -> None:
    other = ex.server.other
    assert other is not None
    await completed(ex, f"{other.url}/img/{ex.task_id}.png")


async def _truncated(ex: Exchange) -> None:
    data = png(900, 700)
    half = data[: len(data) // 2]
    await ex.send(200, half, headers={"Content-Type": "image/png"}, length=len(data))
    ex.writer.close()


async def _truncated_unsized(ex: Exchange) -> None:
    data = png(900, 700)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
    ex.writer.write(head + data[: len(data) // 2])
    await ex.writer.drain()
    ex.writer.close()


async def _oversized_declared(ex: Exchange) -> None:
    await ex.send(200, png()[:64], headers={"Content-Type": "image/png"}, length=100 * MB)
    ex.writer.close()


async def _oversized_streamed(ex: Exchange) -> None:
    head = png()
    await _chunked(ex, head + b"\x00" * (1 * MB - len(head)), 70 * MB, "image/png")


async def _pixel_bomb(ex: Exchange) -> None:
    await ex.send(200, pixel_bomb(), headers={"Content-Type": "image/png"})


async def _gzip_image(ex: Exchange) -> None:
    headers = {"Content-Type": "image/png", "Content-Encoding": "gzip"}
    await ex.send(200, gzip_bomb(), headers=headers)


async def _html_image(ex: Exchange) -> None:
    page = b"<html><head><title>Access denied</title></head><body>no</body></html>"
    await ex.send(200, page, headers={"Content-Type": "image/png"})


async def _png_as_text(ex: Exchange) -> None:
    await ex.send(200, png(), headers={"Content-Type": "text/plain"})


def _flipped_idat_byte(data: bytes) -> bytes:
    """Whole in length, wrong in one IDAT byte: only the chunk's CRC tells."""
    at = data.index(b"IDAT") + 8
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


async def _png_bad_crc(ex: Exchange) -> None:
    await ex.send(200, _flipped_idat_byte(png(900, 700)), headers={"Content-Type": "image/png"})


async def _png_without_iend(ex: Exchange) -> None:
    data = png(900, 700)
    await ex.send(200, data[: data.index(b"IEND") - 4], headers={"Content-Type": "image/png"})


async def _drip_image(ex: Exchange) -> None:
    data = png()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n"
    await drip(ex, head.encode(), data)


async def _drip_create(ex: Exchange) -> None:
    body = json.dumps(task(ex, "pending")).encode()
    await drip(ex, _json_head(len(body)), body)


def _create_with_id(task_id: str):  # type: ignore[no-untyped-def]
    async def create(ex: Exchange) -> None:
        await ex.json(200, {"id": task_id, "status": "pending"})

    return create


def _body(value: object):  # type: ignore[no-untyped-def]
    async def status(ex: Exchange) -> None:
        body = value(ex) if callable(value) else value
        await _status_body(ex, body if isinstance(body, bytes) else json.dumps(body).encode())

    return status


async def _slow_then_nothing(ex: Exchange) -> None:
    await asyncio.sleep(0.05)
    await silent(ex)


ANSWERS = "hostile and broken answers"

CASES: list[Case] = [
    Case("malformed_json", ANSWERS, status=_body(b'{"id": "')),
    Case(
        "html_page",
        ANSWERS,
        status=lambda ex: _status_body(ex, b"<html><title>Login</title></html>", "text/html"),
    ),
    Case("html_502", ANSWERS, status=_html_502),
    Case(
        "wrong_types",
        ANSWERS,
        status=_body(lambda ex: {"id": ex.task_id, "status": ["completed"], "images": "x"}),
    ),
    Case("missing_fields", ANSWERS, status=_body({"status": "completed"})),
    Case("unknown_status", ANSWERS, status=_body(lambda ex: task(ex, "exploded"))),
    Case("completed_no_images", ANSWERS, status=_body(lambda ex: task(ex, "completed"))),
    Case(
        "image_url_not_http",
        ANSWERS,
        status=_body(lambda ex: task(ex, "completed", images=[{"url": "file:///etc/passwd"}])),
    ),
    Case("huge_body_declared", ANSWERS, status=_huge_declared),
    Case("huge_body_chunked", ANSWERS, status=_huge_chunked),
    Case("gzip_bomb_answer", ANSWERS, status=_gzip_json),
    Case("drip_status_body", ANSWERS, status=_drip_body),
    Case("drip_status_headers", ANSWERS, status=_drip_all),
    Case("drip_create", ANSWERS, create=_drip_create),
    Case("silent_status", ANSWERS, status=_slow_then_nothing),
    Case("reset_status", ANSWERS, status=reset),
    Case("server_error_forever", ANSWERS, status=_server_error),
    Case("evil_id_relative", ANSWERS, create=_create_with_id("../../evil")),
    Case("evil_id_absolute", ANSWERS, create=_create_with_id("/tmp/evil")),
    Case(
        "other_id_in_status",
        ANSWERS,
        status=_body(lambda ex: {**task(ex, "completed"), "id": OTHER_ID}),
    ),
    Case("redirect_api_other_origin", ANSWERS, status=_redirect_api),
    Case(
        "image_redirect_other_origin",
        ANSWERS,
        status=_image_elsewhere,
        image=_image_redirect,
        succeeds=True,
    ),
    Case("image_on_other_origin", ANSWERS, status=_image_other_origin, succeeds=True),
    Case("truncated_download", ANSWERS, image=_truncated),
    Case("truncated_download_unsized", ANSWERS, image=_truncated_unsized),
    Case("oversized_download_declared", ANSWERS, image=_oversized_declared),
    Case("oversized_download_streamed", ANSWERS, image=_oversized_streamed),
    Case("pixel_bomb", ANSWERS, image=_pixel_bomb),
    Case("gzip_bomb_image", ANSWERS, image=_gzip_image),
    Case("html_as_image", ANSWERS, image=_html_image),
    Case("png_as_text_plain", ANSWERS, image=_png_as_text, succeeds=True),
    Case("drip_image", ANSWERS, image=_drip_image),
    Case("png_bad_crc", ANSWERS, image=_png_bad_crc),
    Case("png_without_iend", ANSWERS, image=_png_without_iend),
]
