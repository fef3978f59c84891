"""The key stays secret even when the server echoes it back: from each of its three sources
(argument, RUNAPI_API_KEY, config file) it is in no output, --debug log, traceback, history row,
file or process argument list; the config file is the owner's alone (0600); and a short key
does not garble the text around it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import AsyncClient, Client, FluxclawError, PollPolicy
from tests.reliability import report
from tests.reliability.hostile import Case, Exchange, Hostile, completed, isolated_env, task

KEY = "sk-echo-SECRET-4b9d2e71"
FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
POLL = PollPolicy(time_scale=0.01)


def _key(ex: Exchange) -> str:
    return ex.headers.get("authorization", "").removeprefix("Bearer ")


async def _echo_failed(ex: Exchange) -> None:
    await ex.json(200, task(ex, "failed", error={"message": f"bad key {_key(ex)} for this"}))


async def _echo_status(ex: Exchange) -> None:
    await ex.json(200, task(ex, f"weird-{_key(ex)}"))


async def _echo_refusal(ex: Exchange) -> None:
    body = {"error": {"code": "invalid", "message": f"key={_key(ex)} cannot do that"}}
    await ex.json(400, body)


async def _echo_url(ex: Exchange) -> None:
    await completed(ex, f"{ex.server.url}/img/{_key(ex)}/{ex.task_id}.png")


async def _missing(ex: Exchange) -> None:
    await ex.json(404, {"error": {"code": "not_found", "message": "gone"}})


async def _hold(ex: Exchange) -> None:
    await ex.json(200, task(ex, "processing"))


CASES = [
    Case("echo_failed", "secrets", status=_echo_failed),
    Case("echo_status", "secrets", status=_echo_status),
    Case("echo_refusal", "secrets", create=_echo_refusal),
    Case("echo_url", "secrets", status=_echo_url, image=_missing),
    Case("hold", "secrets", status=_hold),
]


@pytest.fixture(scope="module")
def server() -> Iterator[Hostile]:
    hostile = Hostile(CASES)
    yield hostile
    hostile.close()


def _env(root: Path) -> dict[str, str]:
    return isolated_env(root)


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLUXCLAW, *args], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("source", ["argument", "environment", "config"])
def test_an_echoed_key_never_leaks(source: str, server: Hostile, tmp_path: Path) -> None:
    env = _env(tmp_path)
    extra: list[str] = []
    if source == "argument":
        extra = ["--api-key", KEY]
    elif source == "environment":
        env["RUNAPI_API_KEY"] = KEY
    else:
        done = _cli(tmp_path, env, "config", "--api-key", KEY)
        assert done.returncode == 0, done.stderr
        mode = stat.S_IMODE(Path(env["FLUXCLAW_CONFIG"]).stat().st_mode)
        assert mode == 0o600, oct(mode)
    outputs = []
    for case in ("echo_failed", "echo_status", "echo_refusal", "echo_url"):
        args = ["generate", f"case={case}", "--base-url", server.url, "--timeout", "5"]
        done = _cli(tmp_path, env, *args, "-o", "out", "--json", "--debug", *extra)
        assert done.returncode != 0 and "debug:" in done.stderr
        outputs += [done.stdout, done.stderr]
    history = _cli(tmp_path, env, "history", "--json", "--limit", "20")
    outputs += [history.stdout, history.stderr]
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert len(rows) >= 3 and any(row.get("error") for row in rows)
    leaks = [text for text in outputs if KEY in text]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "config.json"]
    leaks += [str(p) for p in files if KEY.encode() in p.read_bytes()]
    report.record("secrets", f"CLI, key from {source}, echoed 4 ways", leaks[:3])
    assert not leaks
    # It was really echoed: the server saw the key, and the messages carry the mask.
    assert "***" in "".join(outputs)


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_library_errors_and_logs_scrub_an_echoed_key(
    kind: type[Any], server: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="fluxclaw")
    texts = []
    for case in ("echo_failed", "echo_status", "echo_refusal"):
        client = kind(api_key=KEY, base_url=server.url, poll=POLL, timeout=5)
        try:
            if kind is Client:
                with client:
                    client.generate(f"case={case}")
            else:

                async def go(client: AsyncClient = client, case: str = case) -> None:
                    async with client:
                        await client.generate(f"case={case}")

                import asyncio

                asyncio.run(go())
        except FluxclawError as error:
            texts += [str(error), repr(error), error.message]
        else:
            raise AssertionError(f"{case} did not fail")
    texts.append(caplog.text)
    leaks = [text for text in texts if KEY in text]
    report.record("secrets", f"{kind.__name__}: errors, reprs and logs", leaks[:3])
    assert not leaks and any("***" in text for text in texts)


@pytest.mark.parametrize("source", ["environment", "config"])
def test_the_key_is_in_no_process_argument_list(
    source: str, server: Hostile, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    if source == "environment":
        env["RUNAPI_API_KEY"] = KEY
    else:
        assert _cli(tmp_path, env, "config", "--api-key", KEY).returncode == 0
    args = ["generate", "case=hold", "--base-url", server.url, "--timeout", "4", "-o", "out"]
    proc = subprocess.Popen(
        [FLUXCLAW, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen_running = False
    found: list[str] = []
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if int(pid) == proc.pid and b"case=hold" in cmdline:
                seen_running = True
            if KEY.encode() in cmdline:
                found.append(pid)
        threading.Event().wait(0.05)
    proc.communicate(timeout=30)
    report.record("secrets", f"process argument lists, key from {source}", found[:3])
    assert seen_running and not found


def test_a_short_key_does_not_garble_ids(server: Hostile, tmp_path: Path) -> None:
    """With the key `e`, a task id full of e's is printed whole; the key alone is masked."""
    env = {**_env(tmp_path), "RUNAPI_API_KEY": "e"}
    args = ["generate", "case=hold", "--base-url", server.url, "--timeout", "1", "-o", "out"]
    done = _cli(tmp_path, env, *args)
    task_id = server.ids and next(i for i, c in server.ids.items() if c.name == "hold")
    problems = [] if f"fluxclaw wait {task_id}" in done.stderr else [done.stderr[-300:]]
    report.record("secrets", "a one-letter key leaves ids whole", problems)
    assert not problems
