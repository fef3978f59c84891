"""How one HTTP exchange is made and read: sessions, timeouts, capped answers, typed errors.

A session makes one attempt (`exchange`); the retry loop around it is written once, in
`_flows.retrying`, from the decisions in `fluxclaw.retries`. A call is retried only when it is
safe: reads, and creates that carry an Idempotency-Key (ours always do), so a dropped answer is
replayed by the server instead of paid twice. The Authorization header is attached by an
`httpx.Auth` that refuses any origin but the configured API base, and nothing here logs headers.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
import time
import urllib.request
import zlib
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

from fluxclaw import _deadlines, contract, errors
from fluxclaw._version import __version__
from fluxclaw.retries import parse_retry_after

if TYPE_CHECKING:
    import asyncio

    from fluxclaw._aio_transport import ApiEngine

log = logging.getLogger("fluxclaw.http")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)
# The whole of one request or download, however the server spaces its bytes.
DEFAULT_REQUEST_TIMEOUT = 60.0
# API answers are a few hundred bytes; anything near this is not a RunAPI answer.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
USER_AGENT = f"fluxclaw/{__version__} httpx/{httpx.__version__}"


@dataclass(slots=True)
class Call:
    """One API request, built once and sent as many times as the retry policy allows."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_safe: bool = True
    auth: bool = True
    task_id: str | None = None
    not_modified_ok: bool = False


class Reply(NamedTuple):  # one per answer: a NamedTuple costs less to define and to make
    status: int
    body: Any
    headers: Mapping[str, str]
    request_id: str | None
    task_id: str | None
    retry_after: float | None


# ---------------------------------------------------------------------------------------------
# Reading answers


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    what: str,
    task_id: str | None = None,
) -> errors.FluxclawError:
    """A typed error from any of the contract's three error bodies, or an HTML/proxy page."""
    cls = errors.for_status(status)
    request_id = headers.get(contract.H_REQUEST_ID)
    task_id = headers.get(contract.H_TASK_ID) or task_id
    retry_after = parse_retry_after(headers.get(contract.H_RETRY_AFTER))
    code: str | None = None
    field_errors: dict[str, list[str]] = {}
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("error")
        if isinstance(raw, dict):
            code = _str(raw.get("code"))
            message = _str(raw.get("message")) or code or f"HTTP {status}"
        else:
            message = _str(raw) or _str(body.get("message")) or f"HTTP {status}"
            code = _str(body.get("code"))
        field_errors = _field_errors(body.get("errors"))
        if field_errors:
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in field_errors.items())
            message = f"{message}: {details}"
    else:
        message = f"HTTP {status} with a non-JSON body{_html_title(content)}"
    text = f"{what} failed ({status}): {_clip(message)}"
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "task_id": task_id,
    }
    if cls is errors.ValidationError:
        kwargs["errors"] = field_errors
    if cls is errors.RateLimitError:
        kwargs["retry_after"] = retry_after
    error = cls(text, **kwargs)
    error.retry_after = retry_after  # a 503 may hint too
    return error


def read_reply(status: int, headers: Mapping[str, str], content: bytes, call: Call) -> Reply:
    """The parsed answer of a successful exchange; raises the typed error otherwise. `headers`
    is httpx's or aiohttp's: both look names up case-insensitively."""
    what = f"{call.method} {call.path}"
    if status == 304 and call.not_modified_ok:
        body: Any = None
    elif 200 <= status < 300:
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise errors.ServerError(
                f"{what} answered {status} with a body that is not JSON{_html_title(content)}",
                status=status,
                request_id=headers.get(contract.H_REQUEST_ID),
                task_id=call.task_id,
            ) from exc
    else:
        raise error_from_response(status, headers, content, what=what, task_id=call.task_id)
    return Reply(
        status=status,
        body=body,
        headers=headers,
        request_id=headers.get(contract.H_REQUEST_ID),
        task_id=headers.get(contract.H_TASK_ID) or call.task_id,
        retry_after=parse_retry_after(headers.get(contract.H_RETRY_AFTER)),
    )


class CappedBody:
    """A body read to at most `limit` bytes, declared or not. It is inflated here, a megabyte at
    a time, rather than by httpx, which inflates each network read whole (64 KB of gzip can
    become 64 MB before any cap sees it). Feed it raw (still encoded) chunks."""

    def __init__(
        self,
        headers: Mapping[str, str],
        limit: int,
        *,
        what: str,
        task_id: str | None,
        error: type[errors.FluxclawError] = errors.ServerError,
    ) -> None:
        self.limit, self.what, self.task_id, self.error = limit, what, task_id, error
        self.buffer = bytearray()
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large()
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        self.inflate: Any = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib headers
        elif encoding not in ("", "identity"):
            raise error(f"{what} came {encoding}-encoded; only gzip is accepted", task_id=task_id)

    def read(self, response: httpx.Response, chunk_size: int | None = None) -> bytes:
        """The whole body; one a transport already read (mocks) is taken as it is."""
        if response.is_stream_consumed:
            self._keep(response.content)
            return bytes(self.buffer)
        for chunk in response.iter_raw(chunk_size):
            self.add(chunk)
        return self.done()

    async def aread(self, response: httpx.Response, chunk_size: int | None = None) -> bytes:
        if response.is_stream_consumed:
            self._keep(response.content)
            return bytes(self.buffer)
        async for chunk in response.aiter_raw(chunk_size):
            self.add(chunk)
        return self.done()

    def add(self, chunk: bytes) -> None:
        if self.inflate is None:
            self._keep(chunk)
            return
        while chunk:
            self._keep(self.inflate.decompress(chunk, 1 << 20))
            chunk = self.inflate.unconsumed_tail

    def done(self) -> bytes:
        if self.inflate is not None:
            self._keep(self.inflate.flush())
        return bytes(self.buffer)

    def _keep(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self.limit:
            raise self._too_large()

    def _too_large(self) -> errors.FluxclawError:
        message = f"{self.what}: more than the {self.limit:,}-byte cap; refusing to read it"
        return self.error(message, task_id=self.task_id)


def transport_error(
    exc: httpx.TransportError, what: str, task_id: str | None
) -> errors.FluxclawError:
    """A typed error for a request that got no answer at all."""
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        # an aiohttp error (AsyncClient's engine) carried as the cause: name the real one
        detail = f"{type(cause).__name__}: {cause}".rstrip(": ")
        timed_out = isinstance(cause, TimeoutError)
    else:
        detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
        timed_out = isinstance(exc, httpx.TimeoutException)
    if timed_out:
        return errors.RequestTimeoutError(f"{what} timed out ({detail})", task_id=task_id)
    return errors.NetworkError(f"{what} got no answer ({detail})", task_id=task_id)


def _clip(text: str, limit: int = 300) -> str:
    """Server text in a message, one line and short: a hostile page cannot flood the terminal."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _field_errors(raw: object) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        items = value if isinstance(value, list) else [value]
        out[str(key)] = [str(item) for item in items]
    return out


def _html_title(content: bytes) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", content[:4096], re.I | re.S)
    if not match:
        return ""
    title = " ".join(match.group(1).decode("utf-8", "replace").split())[:120]
    return f" ({title})" if title else ""


# ---------------------------------------------------------------------------------------------
# Sessions


class BearerAuth(httpx.Auth):
    """Adds the key only to requests for the API's own origin, whatever URL a caller passes."""

    def __init__(self, api_key: str | None, base_url: str) -> None:
        self._key = api_key
        self._origin = _origin(httpx.URL(base_url))

    def header(self) -> dict[str, str]:
        """The Authorization header for a path of the API's own (AsyncClient's direct engine)."""
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._key and _origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._key}"
        else:
            request.headers.pop("Authorization", None)
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth(origin={self._origin!r})"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default)


# httpcore checks every pooled connection on every pool event, so a few dozen connections, all
# kept alive, cost far less CPU than a hundred that churn; 32 carry ~150 req/s at 200 ms each.
DEFAULT_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32)


def _client_kwargs(
    timeout: httpx.Timeout | float | None,
    limits: httpx.Limits | None,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
        "limits": limits or DEFAULT_LIMITS,
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
    }
    if transport is None:  # httpx makes its own (a proxy is set): it needs the context now
        kwargs["verify"] = _ssl_context()
    return kwargs


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~25 ms; every session can share one context."""
    return httpx.create_ssl_context()


def sync_transport(limits: httpx.Limits | None) -> httpx.BaseTransport | None:
    """Connections that honour total deadlines (`fluxclaw._deadlines`), or None for httpx's own
    when the environment names a proxy: httpx reads HTTP(S)_PROXY only when given no transport,
    and then only per-read time-outs apply."""
    if urllib.request.getproxies():
        return None
    return _deadlines.transport(_ssl_context, limits or DEFAULT_LIMITS)


def plain_client(timeout: httpx.Timeout | float | None = None) -> httpx.Client:
    """For image hosts and upload URLs: no Authorization, ever, so redirects are safe to follow."""
    transport = sync_transport(None)
    kwargs = _client_kwargs(timeout, None, transport)
    kwargs["headers"] = {"User-Agent": USER_AGENT}
    return httpx.Client(
        transport=transport,
        follow_redirects=True,
        max_redirects=5,
        **kwargs,
    )


def async_plain_client(timeout: httpx.Timeout | float | None = None) -> httpx.AsyncClient:
    kwargs = _client_kwargs(timeout, None, None)
    kwargs["headers"] = {"User-Agent": USER_AGENT}
    return httpx.AsyncClient(follow_redirects=True, max_redirects=5, **kwargs)


class _SessionBase:
    def __init__(self, api_key: str | None, base_url: str) -> None:
        self.base_url = base_url
        self._auth = BearerAuth(api_key, base_url)

    def _kwargs(
        self,
        timeout: httpx.Timeout | float | None,
        limits: httpx.Limits | None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
    ) -> dict[str, Any]:
        """The API client's settings: its base, the origin-bound auth, no redirects."""
        return {
            "base_url": self.base_url,
            "auth": self._auth,
            "follow_redirects": False,
            "transport": transport,
            **_client_kwargs(timeout, limits, transport),
        }

    def _log(self, call: Call, outcome: str, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            ms = (time.monotonic() - started) * 1000
            log.debug("%s %s -> %s in %.0f ms", call.method, call.path, outcome, ms)

    def _failed(self, call: Call, exc: Exception, started: float) -> errors.FluxclawError:
        self._log(call, type(exc).__name__, started)
        what = f"{call.method} {call.path}"
        if isinstance(exc, httpx.TransportError):
            return transport_error(exc, what, call.task_id)
        return errors.RequestTimeoutError(
            f"{what} timed out (no whole answer by its deadline)", task_id=call.task_id
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class Session(_SessionBase):
    """A pooled sync connection to the API; `exchange` is the only way requests leave."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(api_key, base_url)
        if transport is None:
            transport = sync_transport(limits)
        self.http = httpx.Client(**self._kwargs(timeout, limits, transport))

    def exchange(self, call: Call, deadline: float | None = None) -> Reply:
        """One attempt (retries are `_flows.send`'s), done by `deadline`: the reply, or the
        typed error. The answer is read in chunks and refused past MAX_ANSWER_BYTES."""
        started = time.monotonic()
        what = f"{call.method} {call.path}"
        try:
            with (
                _deadlines.bounded(deadline),
                self.http.stream(
                    call.method, call.path, json=call.json, params=call.params, headers=call.headers
                ) as response,
            ):
                body = CappedBody(
                    response.headers, MAX_ANSWER_BYTES, what=what, task_id=call.task_id
                )
                content = body.read(response)
        except httpx.TransportError as exc:
            raise self._failed(call, exc, started) from exc
        self._log(call, str(response.status_code), started)
        return read_reply(response.status_code, response.headers, content, call)

    def close(self) -> None:
        self.http.close()


class AsyncSession(_SessionBase):
    """The asyncio twin of `Session`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        import asyncio  # here, not at the top: a blocking process never pays for its import

        super().__init__(api_key, base_url)
        limits = limits or DEFAULT_LIMITS
        self.http: httpx.AsyncClient | None = None
        self._engine: ApiEngine | None = None
        if transport is not None or urllib.request.getproxies():
            # a transport of the caller's, or a proxy: httpx honours HTTP(S)_PROXY and NO_PROXY
            # only on its own transport (aiohttp's trust_env would also read ~/.netrc)
            self.http = httpx.AsyncClient(**self._kwargs(timeout, limits, transport))
        else:
            from fluxclaw._aio_transport import ApiEngine

            read = DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout)
            self._engine = ApiEngine(
                tls=_ssl_context(),
                timeout=read,
                limits=limits,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        # httpx's and aiohttp's pools rescan their queue on every event, so thousands of queued
        # requests cost O(n^2) CPU; requests wait here, in a queue that costs nothing to wait in.
        self._gate = asyncio.Semaphore(limits.max_connections or 32)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _same_loop(self) -> None:
        """Connections and the queue belong to the loop that first used them; say so plainly
        instead of failing deep inside aiohttp when a second `asyncio.run` reuses the client."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "This AsyncClient was first used in another event loop; make one AsyncClient per "
                "asyncio.run() (or use `async with fluxclaw.AsyncClient() as client:` inside it)."
            )

    async def exchange(self, call: Call, deadline: float | None = None) -> Reply:
        import asyncio

        self._same_loop()
        started = time.monotonic()
        what = f"{call.method} {call.path}"
        left = None if deadline is None else deadline - started
        try:
            async with asyncio.timeout(left), self._gate:
                if self._engine is not None:
                    status, headers, content = await self._direct(self._engine, call, what)
                else:
                    status, headers, content = await self._via_httpx(call, what)
        except (httpx.TransportError, TimeoutError) as exc:
            raise self._failed(call, exc, started) from exc
        self._log(call, str(status), started)
        return read_reply(status, headers, content, call)

    async def _direct(
        self, engine: ApiEngine, call: Call, what: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        if not call.path.startswith("/"):  # a path, so the key cannot leave the base's origin
            raise ValueError(f"an API call needs a path, not {call.path[:60]!r}")
        headers = {**self._auth.header(), **call.headers} if call.auth else dict(call.headers)
        data = None
        if call.json is not None:  # encoded as httpx encodes it: both clients send one body
            data = json.dumps(
                call.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers["Content-Type"] = "application/json"

        def sink(answer: Mapping[str, str]) -> CappedBody:
            return CappedBody(answer, MAX_ANSWER_BYTES, what=what, task_id=call.task_id)

        return await engine.send(
            call.method,
            self.base_url.rstrip("/") + call.path,
            params=call.params,
            data=data,
            headers=headers,
            sink=sink,
        )

    async def _via_httpx(self, call: Call, what: str) -> tuple[int, httpx.Headers, bytes]:
        assert self.http is not None
        async with self.http.stream(
            call.method, call.path, json=call.json, params=call.params, headers=call.headers
        ) as response:
            body = CappedBody(response.headers, MAX_ANSWER_BYTES, what=what, task_id=call.task_id)
            return response.status_code, response.headers, await body.aread(response)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self._engine is not None:
            await self._engine.aclose()
