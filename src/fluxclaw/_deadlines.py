"""Total deadlines for blocking requests: httpx bounds each read, never a whole request.

A server that drips one byte a second never trips a per-read time-out. `Client` therefore sets a
deadline for each request (`bounded`) and its connections come from a network backend whose every
connect, read and write gets only the time left before that deadline. `AsyncClient` needs none of
this: it wraps each request in `asyncio.timeout`.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import typing
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import httpcore
import httpx

_deadline: ContextVar[float | None] = ContextVar("fluxclaw_deadline", default=None)


@contextlib.contextmanager
def bounded(deadline: float | None) -> Iterator[None]:
    """Requests made inside end by `deadline` (a `time.monotonic()` value) or time out."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, kind: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise kind("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, tls: Callable[[], ssl.SSLContext]) -> None:
        self._inner = inner
        self._tls = tls

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        # httpcore hands over the pool's placeholder (see `transport`); the real context, with
        # its CA bundle, is made at the first handshake
        return _Stream(self._inner.start_tls(self._tls(), server_hostname, left), self._tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, tls: Callable[[], ssl.SSLContext]) -> None:
        self._inner = httpcore.SyncBackend()
        self._tls = tls

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _Stream(stream, self._tls)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, left, socket_options), self._tls)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def transport(tls: Callable[[], ssl.SSLContext], limits: httpx.Limits) -> httpx.HTTPTransport:
    """httpx's own transport with connections that honour `bounded`. With a proxy set in the
    environment httpx mounts its own transports instead, and only per-read time-outs apply.

    `tls` makes the TLS context when a handshake first needs it: loading the CA bundle is ~20 ms
    of a cold process's CPU, wasted on a plain-http base such as the sandbox. The pool is given a
    placeholder that trusts no CA, so a handshake that ever used it would fail, never pass."""
    placeholder = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    made = httpx.HTTPTransport(verify=placeholder, limits=limits)
    made._pool = httpcore.ConnectionPool(
        ssl_context=placeholder,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend(tls),
    )
    return made
