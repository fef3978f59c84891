"""Callback delivery: POST a finished task's envelope to its callback_url, retrying with backoff.

The sandbox only ever calls loopback hosts: it runs on developer machines and CI runners, where a
callback_url pointing anywhere else would turn it into a tool for poking at other hosts. Such URLs
are refused at create time (422) and checked again here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

ATTEMPTS: Final = 6
BACKOFF_SECONDS: Final = 1.0  # doubled after each failed attempt, divided by the sandbox speed
TIMEOUT_SECONDS: Final = 5.0


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on localhost or a loopback IP literal; names are never resolved."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CallbackSender:
    """Owns the HTTP client and the delivery tasks so that stopping the server cancels them."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(
        self, url: str, envelope: dict[str, Any], record: list[dict[str, Any]], speed: float
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(url, envelope, record, speed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, envelope: dict[str, Any], record: list[dict[str, Any]], speed: float
    ) -> None:
        if not is_loopback_url(url):
            record.append({"attempt": 0, "time": time.time(), "status": None, "error": "refused"})
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, trust_env=False)
        body = json.dumps(envelope).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fluxclaw-sandbox",
            "X-RunAPI-Task-Id": str(envelope["id"]),
        }
        delay = BACKOFF_SECONDS / max(speed, 1e-9)
        for attempt in range(1, ATTEMPTS + 1):
            entry: dict[str, Any] = {"attempt": attempt, "time": time.time()}
            try:
                response = await self._client.post(url, content=body, headers=headers)
                entry.update(status=response.status_code, error=None)
            except httpx.HTTPError as error:
                entry.update(status=None, error=type(error).__name__)
            record.append(entry)
            status = entry["status"]
            if isinstance(status, int) and 200 <= status < 300:
                return
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
