"""Deadline, unknown status and failed task each raise their documented error with the task id."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

import httpx
import pytest

import fluxclaw
from fluxclaw import (
    ConflictError,
    RetryPolicy,
    TaskFailedError,
    TaskTimeoutError,
    UnknownStatusError,
    contract,
)


def test_deadline_carries_the_id_and_says_how_to_resume(client: Any) -> None:
    task = client.submit_generate("a slow sunrise [sandbox:seconds=3]")
    with pytest.raises(TaskTimeoutError) as caught:
        client.wait(task.id, timeout=0.3)
    error = caught.value
    assert error.task_id == task.id
    assert f"fluxclaw wait {task.id}" in str(error)
    assert f'client.wait("{task.id}")' in str(error)
    assert error.exit_code == contract.EXIT_TIMEOUT
    assert client.wait(task.id, timeout=10).task_id == task.id  # the paid result is not lost


def test_generate_deadline(client: Any) -> None:
    with pytest.raises(TaskTimeoutError) as caught:
        client.generate("a slow sunset [sandbox:seconds=3]", timeout=0.2)
    assert caught.value.task_id


def test_failed_task(client: Any, sandbox: Any) -> None:
    with pytest.raises(TaskFailedError) as caught:
        client.generate("a forbidden thing [sandbox:fail]")
    error = caught.value
    assert error.task_id and "Content policy violation" in str(error)
    assert error.exit_code == contract.EXIT_TASK_FAILED
    assert sandbox.ledger()["charges"] == []


def test_idempotency_conflict_is_not_retried(client: Any) -> None:
    client.submit_generate("a kite", idempotency_key="conflict-key")
    with pytest.raises(ConflictError) as caught:
        client.submit_generate("a different kite", idempotency_key="conflict-key")
    assert caught.value.status == 409 and caught.value.exit_code == contract.EXIT_INVALID


TASK_ID = "123e4567-e89b-12d3-a456-426614174000"


def test_unknown_status_is_an_error_not_a_reason_to_poll(make_client: Any, sandbox: Any) -> None:
    """The sandbox cannot answer an unknown status, so this one case uses a fake transport."""
    polls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        polls.append(request.url.path)
        body = {"id": TASK_ID, "status": "queued_for_review"}
        return httpx.Response(200, content=json.dumps(body).encode())

    client = make_client(transport=httpx.MockTransport(answer))
    with pytest.raises(UnknownStatusError) as caught:
        client.wait(TASK_ID, action="text_to_image", timeout=5)
    assert caught.value.task_id == TASK_ID
    assert "queued_for_review" in str(caught.value)
    assert len(polls) == 1


def answering_with(raw: bytes) -> socket.socket:
    """A loopback server that answers each connection with `raw`, whatever it was asked."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed by the test
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(raw)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_no_answer_refused_connection_and_broken_answer_are_told_apart(make_client: Any) -> None:
    """A silent server is a timeout; a closed port or a malformed answer a network error, in both
    clients (the async one runs on aiohttp, whose errors reach httpx as ConnectTimeout or not at
    all)."""
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(8)  # accepts into the backlog, never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    broken = answering_with(b"HTTP/1.1 2OO NOT-A-STATUS\r\n\r\n")
    one_try = RetryPolicy(max_attempts=1)
    try:
        for sock, error, words in [
            (quiet, fluxclaw.RequestTimeoutError, "timed out"),
            (closed, fluxclaw.NetworkError, "got no answer"),
            (broken, fluxclaw.NetworkError, "got no answer"),
        ]:
            port = sock.getsockname()[1]
            client = make_client(
                base_url=f"http://127.0.0.1:{port}", http_timeout=0.3, retry=one_try
            )
            with pytest.raises(error) as caught:
                client.balance()
            assert words in str(caught.value)
            assert "idempotency" not in str(caught.value)  # a read: nothing to replay
    finally:
        quiet.close()
        closed.close()
        broken.close()


def test_a_proxy_named_in_the_environment_carries_api_calls(
    make_client: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox stands in for the proxy: the API host is a loopback port where nothing
    # listens, so only a request that went through the proxy gets an answer.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", sandbox.base_url)
    nowhere = socket.socket()
    nowhere.bind(("127.0.0.1", 0))  # reserved, never listening
    try:
        api = f"http://127.0.0.1:{nowhere.getsockname()[1]}"
        client = make_client(base_url=api, retry=RetryPolicy(max_attempts=1))
        assert "balance_cents" in client.balance()
    finally:
        nowhere.close()
    assert any(r["path"] == "/api/v1/me/balance" for r in sandbox.requests())
