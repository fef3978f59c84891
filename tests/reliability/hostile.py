"""A hostile RunAPI look-alike: a raw asyncio server on 127.0.0.1 that answers as a case says.

It speaks just enough HTTP/1.1 to say anything a broken or malicious server could: garbage,
HTML, wrong types, 50 MB bodies, bytes dripped one at a time, resets, truncated or endless
images, gzip bombs, redirects to another origin, evil task ids. A second instance stands for
"another origin" and records every request's headers, so a test can see whether the key went
there. The prompt names the case (`case=NAME`) and the task id carries it on (its last group is
the case's number), so every door can meet every case at the same time on one server.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

ID_PREFIX = "0b6f3c1e-5d2a-4c1b-9e8f-"
DRIP_SECONDS = 0.4  # between dripped bytes: each read succeeds, the whole never arrives


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Exchange:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    method: str
    path: str
    headers: dict[str, str]
    server: Hostile
    task_id: str

    async def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} X"]
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if "Transfer-Encoding" not in all_headers:
            all_headers["Content-Length"] = str(len(body) if length is None else length)
        head += [f"{k}: {v}" for k, v in all_headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()

    async def json(self, status: int, value: object) -> None:
        await self.send(status, json.dumps(value).encode())


Handler = Callable[[Exchange], Awaitable[None]]


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    """An environment with no RunAPI/fluxclaw settings of the user's: home, config and history
    under `root`, and polls scaled down (the cases are about answers, not timing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    env.update(
        HOME=str(root / "home"),
        FLUXCLAW_CONFIG=str(root / "home" / "config.json"),
        FLUXCLAW_DATA_DIR=str(root / "home" / "data"),
        FLUXCLAW_TIME_SCALE="0.01",
        **extra,
    )
    return env


def task(ex: Exchange, status: str = "processing", **extra: object) -> dict[str, object]:
    return {"id": ex.task_id, "status": status, **extra}


@cache
def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


@cache
def pixel_bomb() -> bytes:
    """A small PNG whose header declares 13000 x 13000 RGBA pixels (676 MB decoded), with real
    zero rows behind it: decoding it would take gigabytes."""
    width = height = 13_000
    row = b"\x00" + b"\x00" * (width * 4)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@cache
def gzip_bomb(size: int = 1 << 30) -> bytes:
    """~1 MB of gzip that expands to `size` bytes of spaces (valid JSON whitespace)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        block = b" " * (1 << 20)
        for _ in range(size >> 20):
            handle.write(block)
    return out.getvalue()


class Hostile:
    """The server; `case` names the behaviour (see `CASES` in the tests)."""

    def __init__(self, cases: list[Case] | None = None) -> None:
        self.cases = {case.name: case for case in cases or []}
        self.ids = {task_id(i): case for i, case in enumerate(cases or [])}
        self.seen: list[Seen] = []
        self.other: Hostile | None = None
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            server = await asyncio.start_server(self._serve, sock=self._sock)
            self._ready.set()
            async with server:
                await self._stop.wait()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for each in pending:
                each.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        self._stop = asyncio.Event()
        self._loop.run_until_complete(main())
        self._loop.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = b""
                if headers.get("content-length", "0").isdigit():
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(method, path, headers))
                case = self._case(path, body)
                the_id = task_id(list(self.cases).index(case.name)) if case else task_id(999)
                exchange = Exchange(reader, writer, method, path, headers, self, the_id)
                await self._answer(exchange, case)
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def _case(self, path: str, body: bytes) -> Case | None:
        found = re.search(rb"case=([a-z0-9_]+)", body)
        if found:
            return self.cases.get(found.group(1).decode())
        ids = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", path)
        return self.ids.get(ids.group(0)) if ids else None

    async def _answer(self, ex: Exchange, case: Case | None) -> None:
        path = ex.path.split("?", 1)[0]
        if path.startswith("/img/"):
            await (case.image if case and case.image else serve_png)(ex)
        elif ex.method == "POST" and path.startswith("/api/v1/flux_2/"):
            await (case.create if case and case.create else default_create)(ex)
        elif ex.method == "GET" and path.startswith("/api/v1/flux_2/"):
            await (case.status if case and case.status else default_status)(ex)
        else:
            await ex.json(404, {"error": {"code": "not_found", "message": "no such route"}})


@dataclass
class Case:
    """What one broken or hostile server does; unset parts behave well."""

    name: str
    area: str
    create: Handler | None = None
    status: Handler | None = None
    image: Handler | None = None
    # What a door may legitimately end with: an error (the default) or a saved image.
    succeeds: bool = False


def task_id(number: int) -> str:
    return f"{ID_PREFIX}{number:012d}"


async def default_create(ex: Exchange) -> None:
    await ex.json(200, task(ex, "pending"))


async def default_status(ex: Exchange) -> None:
    await completed(ex)


async def completed(ex: Exchange, url: str | None = None) -> None:
    image = url or f"{ex.server.url}/img/{ex.task_id}.png"
    body = task(ex, "completed", images=[{"url": image}], usage={"cost": 0.05})
    await ex.json(200, body)


async def serve_png(ex: Exchange) -> None:
    await ex.send(200, png(), headers={"Content-Type": "image/png"})


async def drip(ex: Exchange, head: bytes, body: bytes) -> None:
    """Headers at once (or dripped, if `head` is empty), then the body a byte at a time."""
    if head:
        ex.writer.write(head)
        await ex.writer.drain()
    for byte in body:
        ex.writer.write(bytes([byte]))
        await ex.writer.drain()
        await asyncio.sleep(DRIP_SECONDS)


async def reset(ex: Exchange) -> None:
    """Close with RST instead of FIN: the peer sees 'connection reset'."""
    sock = ex.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ex.writer.transport.abort()


async def silent(ex: Exchange) -> None:
    await asyncio.sleep(3600)
