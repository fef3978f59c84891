"""Starting and stopping: in-process (fast, no threads left) and `fluxclaw sandbox` as a process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from fluxclaw.sandbox.server import SandboxServer

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))


def test_start_and_stop_are_fast_and_leave_no_threads() -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    with SandboxServer(speed=100) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert time.monotonic() - started < 5.0  # a hang, not a speed test (bench/ for that)
        answer = httpx.get(
            f"{server.base_url}/api/v1/me", headers={"Authorization": "Bearer k"}, trust_env=False
        )
        assert answer.status_code == 200
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5.0  # stop may give connections a 1 s grace
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/api/v1/me", trust_env=False)


def read_first_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    return lines.get(timeout=timeout).strip()


def test_fluxclaw_sandbox_runs_the_product_page_curl_example() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    process = subprocess.Popen(
        [FLUXCLAW, "sandbox", "--port", "0", "--speed", "50", "--api-key", "sk-cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = read_first_line(process, 20)
        assert base.startswith("http://127.0.0.1:") and int(base.rsplit(":", 1)[1]) > 0
        curl = subprocess.run(
            [
                "curl", "-s", "-X", "POST", f"{base}/v1/text_to_image",
                "-H", "Authorization: Bearer sk-cli",
                "-H", "Content-Type: application/json",
                "-d", '{"model": "flux-2-pro-text-to-image", "prompt": "a ceramic vase with dried '
                'flowers on a linen tablecloth, natural window light, 35mm film grain", '
                '"aspect_ratio": "3:4", "output_resolution": "2k"}',
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )  # fmt: skip
        assert '"id":' in curl.stdout
        assert '"status":"pending"' in curl.stdout or '"status":"processing"' in curl.stdout
        assert httpx.get(f"{base}/api/v1/me", trust_env=False).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_bad_options_exit_with_a_one_line_error() -> None:
    result = subprocess.run(
        [FLUXCLAW, "sandbox", "--faults", "500=7"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 4
    assert "Traceback" not in result.stderr and "500=7" in result.stderr
