"""Every hostile or broken answer through every door: `Client`, `AsyncClient`, the CLI and the
MCP `generate` tool, against a raw hostile server on loopback (no mocked transport).

Each (door, case) must end with a typed error (or, where the answer is odd but honest, a good
image) within the door's deadline + 5 s, with no file outside its output folder, no partial file,
peak memory under 300 MB, and no Authorization header sent anywhere but the API's own routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import TextContent
from PIL import Image

from mcp import ClientSession
from tests.peak import command as peak_command
from tests.peak import peak_mb
from tests.reliability import report
from tests.reliability.cases import ANSWERS as ANSWERS_AREA
from tests.reliability.cases import CASES
from tests.reliability.hostile import Hostile, gzip_bomb, isolated_env, pixel_bomb, png

KEY = "sk-hostile-KEY-5d1e0c"
DEADLINE = 3.0  # every door's timeout in these tests
SLACK = 5.0
MEMORY_MB = 300
FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
DOORS = ("client", "async", "cli", "mcp")
# A library door makes two calls (generate, then save), each with the deadline.
ALLOWED = {"client": 2 * DEADLINE, "async": 2 * DEADLINE, "cli": DEADLINE, "mcp": DEADLINE}
# After paying, a save gets a few seconds even when the wait used the whole timeout.
SAVE_FLOOR = 3.0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _env(root: Path) -> dict[str, str]:
    return isolated_env(root, RUNAPI_API_KEY=KEY)


def _library(door: str, server: Hostile, root: Path) -> dict[str, dict[str, Any]]:
    names = [case.name for case in CASES]
    args = [sys.executable, "-m", "tests.reliability.door", door, server.url, str(root)]
    proc = subprocess.run(
        [*args, str(DEADLINE), *names],
        env={**_env(root), "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=900,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != len(names):
        raise AssertionError(f"{door} worker failed: {proc.stderr[-2000:]}")
    return {row["case"]: row for row in rows}


def _cli(server: Hostile, root: Path) -> dict[str, dict[str, Any]]:
    """One `fluxclaw generate` per case, each a process of its own."""
    results = {}
    for case in CASES:
        work = root / case.name
        (work / "out").mkdir(parents=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:
            peak = Path(scratch) / "peak"
            proc = subprocess.run(
                peak_command(
                    *("generate", f"case={case.name}", "--base-url", server.url),
                    *("--timeout", str(DEADLINE), "-o", "out", "--json"),
                ),
                cwd=work,
                env={**_env(root), "PEAK_FILE": str(peak)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            results[case.name] = {
                "ok": proc.returncode == 0,
                "exit": proc.returncode,
                "stdout": proc.stdout,
                "message": proc.stderr,
                "elapsed": time.monotonic() - started,
                "rss_mb": peak_mb(peak),
            }
    return results


def _mcp(server: Hostile, root: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    work = root / "work"
    work.mkdir(parents=True)
    marker = str(root / "out")

    async def drive() -> None:
        params = StdioServerParameters(
            command=FLUXCLAW,
            args=[
                *("mcp", "--base-url", server.url),
                *("--timeout", str(DEADLINE), "--output-dir", marker),
            ],
            env=_env(root),
            cwd=work,
        )
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for case in CASES:
                before = _files(root / "out")
                started = time.monotonic()
                with anyio.fail_after(120):
                    answer = await session.call_tool("generate", {"prompt": f"case={case.name}"})
                text = "\n".join(b.text for b in answer.content if isinstance(b, TextContent))
                results[case.name] = {
                    "ok": not answer.is_error,
                    "message": text,
                    "elapsed": time.monotonic() - started,
                    "new_files": sorted(str(p) for p in _files(root / "out") - before),
                    # The server's peak so far (VmHWM only grows): a jump names its case.
                    "rss_mb": _peak_rss(marker),
                }

    anyio.run(drive)
    return results


def _peak_rss(marker: str) -> float:
    """VmHWM of the live `fluxclaw mcp` process whose arguments name `marker`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if marker in cmdline and "mcp" in cmdline:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            continue
    raise AssertionError("the MCP server process was not found")


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """All four doors meet every case at once (each door takes its cases in turn)."""
    # The bombs take seconds to build; built inside the server's loop they would stall every
    # door's requests at that moment, so they are built before any door starts.
    gzip_bomb(), pixel_bomb(), png(900, 700), png()
    other = Hostile()
    server = Hostile(CASES)
    server.other = other
    base = tmp_path_factory.mktemp("hostile")
    roots = {door: base / door for door in DOORS}
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(door: str) -> None:
        try:
            if door in ("client", "async"):
                results[door] = _library(door, server, roots[door])
            elif door == "cli":
                results[door] = _cli(server, roots[door])
            else:
                results[door] = _mcp(server, roots[door])
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(door,)) for door in DOORS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    yield {"results": results, "errors": errors, "roots": roots, "server": server, "other": other}
    server.close()
    other.close()


def _broken(door: str, name: str, runs: dict[str, Any]) -> list[str]:
    """The promises this (door, case) broke; empty when it kept them all."""
    case = next(c for c in CASES if c.name == name)
    row = runs["results"][door][name]
    broken = []
    message = row.get("message", "")
    if case.succeeds:
        if not row["ok"]:
            broken.append(f"should have saved the image, failed: {message[:300]}")
    elif row["ok"]:
        broken.append("ended without an error")
    elif door in ("client", "async") and row["type"].startswith("untyped"):
        broken.append(f"untyped error {row['type']}: {message[:300]}")
    elif door == "cli" and (
        "Traceback" in message or "internal error" in message or row["exit"] not in range(1, 8)
    ):
        broken.append(f"CLI exit {row['exit']}: {message[-300:]}")
    elif door == "cli" and json.loads(row["stdout"] or "{}").get("exit_code") != row["exit"]:
        broken.append(f"--json did not print the failure: {row['stdout'][:200]!r}")
    elif door == "mcp" and "internal error" in message:
        broken.append(f"MCP internal error: {message[:300]}")
    limit = ALLOWED[door] + SLACK + (SAVE_FLOOR if door in ("cli", "mcp") else 0)
    if row["elapsed"] > limit:
        broken.append(f"took {row['elapsed']:.1f}s (at most {limit:.0f}s)")
    if row["rss_mb"] > MEMORY_MB:
        broken.append(f"peak memory {row['rss_mb']:.0f} MB")
    broken += _disk(door, case.name, case.succeeds, runs)
    if KEY in message:
        broken.append("the key is in the error")
    return broken


def _disk(door: str, name: str, succeeds: bool, runs: dict[str, Any]) -> list[str]:
    root: Path = runs["roots"][door]
    out = root / "out" if door == "mcp" else root / name / "out"
    problems = []
    everything = _files(root)
    outs = [root / "out"] if door == "mcp" else [root / c.name / "out" for c in CASES]
    allowed = [*outs, root / "home"]
    strays = [p for p in everything if not any(p.is_relative_to(a) for a in allowed)]
    if strays:
        problems.append(f"files outside the output folder: {strays[:3]}")
    if any("evil" in p.name for p in everything) or Path("/tmp/evil.png").exists():
        problems.append("a server-chosen id became a file name")
    if any(p.name.endswith(".part") or p.name.startswith(".") for p in _files(out)):
        problems.append("a partial file was left")
    if door == "mcp":
        images = [Path(p) for p in runs["results"][door][name]["new_files"]]
        images = [p for p in images if p.suffix in IMAGE_SUFFIXES]
    else:
        images = [p for p in _files(out) if p.suffix in IMAGE_SUFFIXES]
    if not succeeds and images:
        problems.append(f"an image was saved from a bad answer: {images}")
    for path in images:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as exc:
            problems.append(f"{path.name} is not a whole image ({exc})")
    return problems


@pytest.mark.parametrize("name", [case.name for case in CASES])
@pytest.mark.parametrize("door", DOORS)
def test_hostile_answer(door: str, name: str, runs: dict[str, Any]) -> None:
    if runs["errors"]:
        raise runs["errors"][0]
    broken = _broken(door, name, runs)
    case = next(c for c in CASES if c.name == name)
    report.record(case.area, f"{door}/{name}", broken)
    assert not broken, broken


def test_no_key_to_another_origin(runs: dict[str, Any]) -> None:
    """The other origin got requests (redirected and direct image URLs), never with the key;
    the API's own image routes never got it either."""
    if runs["errors"]:
        raise runs["errors"][0]
    other: Hostile = runs["other"]
    server: Hostile = runs["server"]
    assert other.seen, "the cases that point at another origin never reached it"
    leaks = [s.path for s in other.seen if "authorization" in s.headers]
    leaks += [
        s.path for s in server.seen if s.path.startswith("/img/") and "authorization" in s.headers
    ]
    report.record("Authorization header", "other origins and image routes", [str(p) for p in leaks])
    assert not leaks


def test_worst_figures_per_door(runs: dict[str, Any]) -> None:
    """The worst time over deadline and the highest peak memory of each door, for the record."""
    if runs["errors"]:
        raise runs["errors"][0]
    for door in DOORS:
        rows = runs["results"][door].values()
        slowest = max(rows, key=lambda row: row["elapsed"])
        heaviest = max(row["rss_mb"] for row in rows)
        name = next(case for case, row in runs["results"][door].items() if row is slowest)
        report.figure(
            ANSWERS_AREA,
            f"{door}: {len(rows)} cases; longest {slowest['elapsed']:.1f} s ({name}; allowed "
            f"{ALLOWED[door] + SLACK + (SAVE_FLOOR if door in ('cli', 'mcp') else 0):.0f} s); "
            f"peak memory {heaviest:.0f} MB",
        )
        assert heaviest < MEMORY_MB
