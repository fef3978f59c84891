"""aiohttp under httpx for `AsyncClient`'s API calls; imported only when such a client is made.

httpx-aiohttp gives the same httpx interface at about 60% of httpcore's CPU per poll
(bench/http_stacks.py), but lets aiohttp errors it has no mapping for escape as they are (a
malformed status line, an oversized header): here every one becomes an `httpx.TransportError`,
so the session retries it and reports it like any other failed exchange.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class ApiTransport(AiohttpTransport):
    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise httpx.RemoteProtocolError(detail, request=request) from exc
