"""Forged callbacks cannot make the receiver read or keep much: a declared size over the limit
is refused before any of the body is read, and a body that turns out bigger is refused once it
passes the limit (the receiver stops reading there); neither wakes a waiter. Connections are
capped and closed when idle, and a refused one sends the waits back to polling."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx

from fluxclaw.callbacks import MAX_BODY, CallbackServer
from tests.reliability import report

TASK = "0b6f3c1e-5d2a-4c1b-9e8f-000000000001"


def test_oversized_callbacks_are_refused_unread() -> None:
    with CallbackServer() as server:
        url = server.callback_url
        assert url is not None
        host, port = "127.0.0.1", server.port
        path = url.split(str(port), 1)[1]
        # 1. A 20 MB Content-Length, and then nothing: the answer comes at once, unread.
        with socket.create_connection((host, port), timeout=10) as sock:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {20 * 1024 * 1024}\r\n\r\n"
            )
            started = time.monotonic()
            sock.sendall(head.encode())
            answer = sock.recv(4096).decode()
            took = time.monotonic() - started
        declared_ok = answer.startswith("HTTP/1.1 413") and took < 5

        # 2. A chunked body with no length that keeps coming: cut off past MAX_BODY.
        sent = 0

        def endless() -> Iterator[bytes]:
            nonlocal sent
            yield b'{"id": "' + TASK.encode() + b'", "status": "completed", "pad": "'
            while sent < 50 * 1024 * 1024:
                sent += 64 * 1024
                yield b"a" * 64 * 1024

        try:
            streamed = httpx.post(url, content=endless(), timeout=30).status_code
        except httpx.HTTPError:
            streamed = 413  # the receiver may close the connection while we are still sending
        # (uvicorn discards what the client still sends; the receiver keeps at most MAX_BODY.)
        streamed_ok = streamed == 413 and not server.receiver.hinted(TASK)
    broken = [] if declared_ok else [f"declared 20 MB: {answer[:40]!r} after {took:.1f}s"]
    broken += [] if streamed_ok else [f"streamed: {streamed}, {sent} bytes sent"]
    report.record("callback bodies", f"over {MAX_BODY // 1024} KiB, declared and streamed", broken)
    assert not broken


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` before its timeout (set by the caller)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_are_capped_and_idle_ones_closed() -> None:
    with CallbackServer(max_connections=4, idle_seconds=1.0) as server:
        url, port = server.callback_url, server.port
        assert url is not None
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(server.wait_for(TASK, 60)))
        waiter.start()
        # Four connections fill the cap: two silent, two stuck halfway through their headers.
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        for sock in held[2:]:
            sock.sendall(b"POST /callbacks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # A fifth is closed as soon as it is taken, and the waiter goes back to polling.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as fifth:
            capped = closed_by_server(fifth) and server.receiver.refused == 1
        waiter.join(10)
        polled = woke == [False] and not server.receiving
        # The four are closed once idle, silent or not, which makes room for a real delivery.
        started = time.monotonic()
        idled = all(closed_by_server(sock) for sock in held)
        idle_for = time.monotonic() - started
        for sock in held:
            sock.close()
        answer = httpx.post(url, json={"id": TASK, "status": "completed"}, timeout=10)
        delivered = answer.status_code == 200 and server.wait_for(TASK, 0)
    broken = [] if capped else ["a connection past the cap was kept"]
    broken += [] if polled else [f"the waiter got {woke}, receiving={server.receiving}"]
    broken += [] if idled and idle_for < 5 else [f"idle connections kept {idle_for:.1f}s"]
    broken += [] if delivered else [f"a delivery after the flood got {answer.status_code}"]
    report.record("round 2: resources", "past the cap, idle and half-sent", broken)
    assert not broken
