"""What the round-2 cases share: the doors (the CLI and the MCP server as real subprocesses, in an
isolated home), and the checks every case makes of what a door said.

A test marked `@pytest.mark.round2("area")` is counted in docs/reliability.md under that area.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import TextContent

from mcp import ClientSession
from tests.reliability.hostile import isolated_env

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-round2-SECRET-0c4f9a7e21"  # 16+ characters: matched as a token wherever it is pasted


def env_for(root: Path, base_url: str, **extra: str) -> dict[str, str]:
    return isolated_env(root, **{"RUNAPI_API_KEY": KEY, "RUNAPI_BASE_URL": base_url, **extra})


def cli(
    root: Path, env: dict[str, str], *args: str, timeout: float = 60, **popen: Any
) -> subprocess.CompletedProcess[str]:
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [FLUXCLAW, *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def mcp_start(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`fluxclaw mcp` with nothing on stdin: a setup it refuses ends it before serving."""
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [FLUXCLAW, "mcp"], cwd=work, env=env, input="", capture_output=True, text=True, timeout=60
    )


def mcp(
    root: Path,
    env: dict[str, str],
    calls: Sequence[tuple[str, dict[str, Any]]],
    *args: str,
    timeout: float = 60,
) -> list[tuple[bool, str]]:
    """Each tool call's (is_error, text), from one `fluxclaw mcp` server."""
    answers: list[tuple[bool, str]] = []
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)

    async def drive() -> None:
        params = StdioServerParameters(
            command=FLUXCLAW,
            args=["mcp", "--output-dir", str(root / "mcp-out"), *args],
            env=env,
            cwd=work,
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for tool, arguments in calls:
                with anyio.fail_after(timeout):
                    answer = await session.call_tool(tool, arguments)
                text = "\n".join(b.text for b in answer.content if isinstance(b, TextContent))
                answers.append((bool(answer.is_error), text))

    anyio.run(drive)
    return answers


def one_error(stderr: str) -> str:
    """The one error line a refusal prints: no traceback, no internal error."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def no_key_in(root: Path, *texts: str) -> None:
    """The key is in no text a door printed and no file under `root` but the config and the
    user's own batch file."""
    assert not [t for t in texts if KEY in t]
    ours = {"config.json", "rows.jsonl", "rows.csv"}
    files = [p for p in root.rglob("*") if p.is_file() and p.name not in ours]
    assert not [str(p) for p in files if KEY.encode() in p.read_bytes()]
