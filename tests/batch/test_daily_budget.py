"""The standing daily budget (`fluxclaw config --daily-budget`) is kept by the job engine, so
every door refuses alike: here the CLI spends up to it and then the MCP server (and the CLI
again) is refused before anything is sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import TextContent

from fluxclaw import contract
from mcp import ClientSession

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-budget-SECRET-77aa"


def test_the_daily_budget_holds_across_the_cli_and_mcp(
    cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    env = {**cli_env, "RUNAPI_API_KEY": KEY, "FLUXCLAW_TIME_SCALE": "0.01"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLUXCLAW, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    assert cli("config", "--daily-budget", "0.10").returncode == 0
    assert (
        json.loads(cli("config", "--json").stdout)["settings"]["daily_budget_usd"]["value"] == 0.10
    )
    for n in range(2):
        done = cli("generate", f"a daily photo {n}", "--base-url", sandbox.base_url, "-o", "out/")
        assert done.returncode == 0, done.stderr
    posts = len([r for r in sandbox.requests() if r["method"] == "POST"])

    async def through_mcp() -> tuple[bool, str]:
        params = StdioServerParameters(
            command=FLUXCLAW, args=["mcp", "--base-url", sandbox.base_url], env=env, cwd=tmp_path
        )
        with anyio.fail_after(60):
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                answer = await session.call_tool("generate", {"prompt": "one photo too many"})
        text = "\n".join(b.text for b in answer.content if isinstance(b, TextContent))
        return answer.is_error, text

    refused, text = anyio.run(through_mcp)
    assert refused and "today's budget of $0.10" in text, text
    again = cli("generate", "and one more", "--base-url", sandbox.base_url, "-o", "out/")
    assert again.returncode == contract.EXIT_BUDGET
    assert "budget" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert len([r for r in sandbox.requests() if r["method"] == "POST"]) == posts
    assert sum(c["amount_cents"] for c in sandbox.ledger()["charges"]) == 10
    # Raising the budget lets work go on.
    assert cli("config", "--daily-budget", "0.20").returncode == 0
    assert cli("generate", "now it fits", "--base-url", sandbox.base_url).returncode == 0
