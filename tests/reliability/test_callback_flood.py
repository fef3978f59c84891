"""Another local user holds 1,100 idle connections to a batch's callback receiver while the batch
runs at `ulimit -n 1024` (the tracker's "6 paid, 0 saved"): the receiver keeps within its
connection cap, the waits poll instead of listening, and every paid image is saved once.
Linux only: the flood is paced by the listener's accept queue in /proc/net/tcp."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import report

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-flood-SECRET-7a2c"
ROWS = 6
FLOOD = 1_100
CHILD_FILES = 1_024
WAVE = 64  # connections opened at once: well under any listener's backlog
# A 3 s task polled on the batch's schedule at 1/100 time scale: about 60 status requests.
MAX_POLLS = 150
OWN_FILES = 1_024  # this process's own, beside the flood: the in-process sandbox, pytest
# The batch runs inside the limit it is given: set, then exec'd.
LIMITED = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({CHILD_FILES}, {CHILD_FILES})); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="paces the flood by /proc/net/tcp (Linux)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def room_for_the_flood() -> Iterator[None]:
    """File descriptors in this process for the flood, up to the hard limit; restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + OWN_FILES
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}: no room to hold the flood")
    if soft == resource.RLIM_INFINITY or soft >= need:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_listening(port: int, child: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the batch's receiver accepts connections (it starts after the plan)."""
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"the batch ended (exit {child.returncode}) before its receiver listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)  # polling for a condition, bounded by the deadline
    pytest.fail(f"no receiver listened on port {port}")


def accept_queue(port: int) -> int | None:
    """Connections waiting in the listener's accept queue (the LISTEN socket's rx_queue in
    /proc/net/tcp), or None when nothing listens there any more."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            return int(fields[4].split(":")[1], 16)
    return None


def flood(port: int, child: subprocess.Popen[bytes], deadline: float) -> list[socket.socket]:
    """FLOOD connections that never send a byte, a wave at a time, each wave waited on until the
    receiver has taken it off its accept queue: past a full queue the kernel would hold the rest
    back for seconds, and the flood would land after the batch had finished."""
    held: list[socket.socket] = []
    while len(held) < FLOOD and child.poll() is None and time.monotonic() < deadline:
        for _ in range(min(WAVE, FLOOD - len(held))):
            sock = socket.socket()
            held.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        while child.poll() is None and time.monotonic() < deadline and accept_queue(port):
            time.sleep(0.005)  # polling for a condition, bounded by the deadline
    return held


def test_a_connection_flood_on_the_receiver_loses_no_paid_image(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    # Each task takes 3 s of wall time whatever the speed: the flood is in place before any
    # task ends, so every wait, download and save happens under it.
    rows = [{"prompt": f"a lantern in a crowd {i} [sandbox:seconds=3]"} for i in range(ROWS)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    port = free_port()
    env = {**cli_env, "RUNAPI_API_KEY": KEY, "FLUXCLAW_TIME_SCALE": "0.01"}
    argv = [sys.executable, "-c", LIMITED, FLUXCLAW, "batch", "rows.jsonl", "-o", "out"]
    argv += ["--json", "--base-url", sandbox.base_url, "--callback-url", f"http://127.0.0.1:{port}"]
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    held: list[socket.socket] = []
    started = time.monotonic()
    with room_for_the_flood(), stdout.open("wb") as out, stderr.open("wb") as err:
        child = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=err)
        try:
            wait_listening(port, child, time.monotonic() + 30)
            held = flood(port, child, time.monotonic() + 20)
            code = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            for sock in held:
                sock.close()
    took = time.monotonic() - started

    errors = stderr.read_text()
    broken = [] if code == 0 else [f"exit {code}: {errors[-300:]!r}"]
    broken += [f"stderr: {word!r}" for word in ("internal error", "Traceback") if word in errors]
    if len(held) < FLOOD:
        broken.append(f"only {len(held)} connections opened")
    folder = tmp_path / "out"
    summary = json.loads(stdout.read_text() or "{}")
    lines = [json.loads(line) for line in manifest_lines(folder / "manifest.jsonl")]
    saved = {line["path"] for line in lines if line.get("status") == "done" and line.get("path")}
    images = [p for p in folder.glob("*") if p.suffix in (".png", ".jpg", ".webp")]
    charges, created = len(sandbox.ledger()["charges"]), len(sandbox.tasks())
    polls = sum(r["method"] == "GET" and "/flux_2/" in r["path"] for r in sandbox.requests())
    if summary.get("done") != ROWS or len(lines) != ROWS or len(saved) != ROWS:
        broken.append(f"{summary.get('done')} done, {len(lines)} manifest rows, {len(saved)} saved")
    if len(images) != ROWS or not all(Path(path).is_file() for path in saved):
        broken.append(f"{len(images)} images on disk")
    if charges != ROWS or created != ROWS:
        broken.append(f"{charges} paid, {created} created")
    if polls > ROWS * MAX_POLLS:  # the poll schedule, not a wait woken again and again at once
        broken.append(f"{polls} status requests for {ROWS} tasks")
    case = f"{FLOOD} idle connections at ulimit -n {CHILD_FILES}"
    report.record("round 2: resources", case, broken)
    assert not broken, f"{broken} after {took:.1f}s"
    assert took < 60, f"took {took:.1f}s"


def manifest_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
