"""aiohttp itself for `AsyncClient`'s API calls; imported only when such a client is made.

httpx on top of aiohttp cost about three times the CPU of the request itself (URL parsing,
header models, the auth flow: bench/per_image.py), for nothing an API call needs. Here a call
goes to aiohttp as `AsyncSession` built it (the base plus a path, so the key never leaves the
base's origin), no redirects, no cookies, bodies left encoded for `CappedBody` to inflate within
its cap. Every aiohttp error becomes an `httpx.TransportError`
carrying it as the cause, so sessions retry and report it like any other failed exchange.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import httpx


class Sink(Protocol):
    """Where a body goes as it arrives (`transport.CappedBody`: capped, inflated)."""

    def add(self, chunk: bytes) -> None: ...
    def done(self) -> bytes: ...


class ApiEngine:
    def __init__(
        self,
        *,
        tls: ssl.SSLContext,
        timeout: httpx.Timeout,
        limits: httpx.Limits,
        headers: Mapping[str, str],
    ) -> None:
        self._tls, self._timeout, self._limits = tls, timeout, limits
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop, as aiohttp requires."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=self._tls,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout.connect, sock_read=self._timeout.read
                ),
                auto_decompress=False,  # the sink inflates, a megabyte at a time
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # a proxy in the environment makes AsyncSession use httpx
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        sink: Callable[[Mapping[str, str]], Sink],
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of one request, the body read into `sink(headers)`."""
        try:
            async with self._open().request(
                method, url, params=params, data=data, headers=headers, allow_redirects=False
            ) as response:
                body = sink(response.headers)
                stream = response.content
                while chunk := await stream.readany():  # what has arrived, each time
                    body.add(chunk)
                return response.status, response.headers, body.done()
        except aiohttp.ClientError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TimeoutError):  # a connect or read that outlived its time-out
                raise httpx.ReadTimeout(detail) from exc
            raise httpx.RemoteProtocolError(detail) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
