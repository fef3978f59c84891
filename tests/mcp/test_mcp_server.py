"""`fluxclaw mcp` as a real subprocess, driven by the official MCP client over stdio, against a
real sandbox: the tools, their results and errors, progress, uploads, prices and `--sandbox`."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from fluxclaw import contract
from mcp import ClientSession

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
DEADLINE = 20.0  # seconds for any one exchange; the sandbox runs at speed 100
TOOLS = {"generate", "remix", "status", "estimate_price", "balance"}
CREATES = ("/api/v1/flux_2/text_to_image", "/api/v1/flux_2/remix_image")

Connect = Callable[..., Any]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def connect(cli_env: dict[str, str], work: Path) -> Connect:
    """Start `fluxclaw mcp ARGS` in an isolated home and working folder; yield a live session."""

    @asynccontextmanager
    async def start(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
        params = StdioServerParameters(
            command=FLUXCLAW, args=["mcp", *args], env={**cli_env, **(env or {})}, cwd=work
        )
        with anyio.fail_after(DEADLINE):
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write, read_timeout_seconds=DEADLINE) as session,
            ):
                await session.initialize()
                yield session

    return start


@pytest.fixture
def api(fluxclaw_sandbox: Any) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment that point the server at the fixture's sandbox."""
    env = {"RUNAPI_API_KEY": fluxclaw_sandbox.api_key, "FLUXCLAW_TIME_SCALE": "0.01"}
    return ["--base-url", fluxclaw_sandbox.base_url], env


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def media_urls(text: str) -> list[str]:
    return [line.removeprefix("MEDIA:") for line in text.splitlines() if line.startswith("MEDIA:")]


def saved_paths(text: str) -> list[Path]:
    return [Path(line.removeprefix("saved: ")) for line in text.splitlines() if "saved: " in line]


def thumbnails(result: CallToolResult) -> list[Image.Image]:
    blocks = [block for block in result.content if isinstance(block, ImageContent)]
    assert all(block.mime_type in ("image/png", "image/jpeg") for block in blocks)
    return [Image.open(io.BytesIO(base64.b64decode(block.data))) for block in blocks]


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.convert("RGB").tobytes()


Progress = list[tuple[float, float | None, str | None]]


def recorder() -> tuple[Progress, Callable[[float, float | None, str | None], Awaitable[None]]]:
    seen: Progress = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    return seen, on_progress


async def test_lists_the_five_tools_with_schemas(
    connect: Connect, api: tuple[list[str], dict[str, str]]
) -> None:
    args, env = api
    async with connect(*args, env=env) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == TOOLS
    generate = listed["generate"].input_schema
    assert generate["required"] == ["prompt"]
    assert set(generate["properties"]) == {"prompt", "model", "aspect_ratio", "resolution"}
    assert generate["properties"]["model"]["default"] == "pro"
    remix = listed["remix"].input_schema
    assert set(remix["required"]) == {"prompt", "images"}
    assert remix["properties"]["images"]["type"] == "array"
    assert listed["status"].input_schema["required"] == ["task_id"]
    assert {"model", "resolution", "count"} <= set(
        listed["estimate_price"].input_schema["properties"]
    )
    assert all(tool.description for tool in listed.values())


async def test_generate_returns_media_url_cost_file_thumbnail_and_progress(
    connect: Connect, api: tuple[list[str], dict[str, str]], fluxclaw_sandbox: Any, work: Path
) -> None:
    args, env = api
    seen, on_progress = recorder()
    async with connect(*args, env=env) as session:
        result = await session.call_tool(
            "generate",
            {"prompt": "a red bicycle at dawn", "aspect_ratio": "16:9"},
            progress_callback=on_progress,
        )
        text = text_of(result)
        assert not result.is_error, text
        task_id = result.structured_content["task_id"]
        # status on the finished task: same shape, the file saved once, no new charge
        again = await session.call_tool("status", {"task_id": task_id})
    assert task_id in text and "flux-2-pro-text-to-image" in text and "$0.05" in text
    [url] = media_urls(text)
    assert url.startswith(f"{fluxclaw_sandbox.base_url}/")
    [path] = saved_paths(text)
    assert path.is_file() and path.parent == work / "generated" / "fluxclaw"
    served = httpx.get(url, trust_env=False, timeout=DEADLINE).content
    assert pixels(path.read_bytes()) == pixels(served)
    assert pixels(served)[0] == contract.image_size("16:9", "1k")
    [thumb] = thumbnails(result)
    assert max(thumb.size) <= 256 and thumb.size[0] > thumb.size[1]
    data = result.structured_content
    assert data["cost_usd"] == 0.05 and data["images"] == [url] and data["paths"] == [str(path)]
    assert len(seen) >= 2 and [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert seen[-1][0] == seen[-1][1]  # the final notification closes the bar
    assert any(task_id in (message or "") for _, _, message in seen)

    assert not again.is_error, text_of(again)
    assert media_urls(text_of(again)) == [url] and saved_paths(text_of(again)) == [path]
    assert len(list(path.parent.glob("*.png"))) == 1
    assert len(fluxclaw_sandbox.ledger()["charges"]) == 1


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prompt": "a red bicycle", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"prompt": "a red bicycle", "model": "ultra"}, "ultra"),
        ({"prompt": "a red bicycle", "resolution": "4k"}, "resolution"),
    ],
)
async def test_invalid_arguments_are_tool_errors_and_send_nothing(
    connect: Connect,
    api: tuple[list[str], dict[str, str]],
    fluxclaw_sandbox: Any,
    arguments: dict[str, Any],
    field: str,
) -> None:
    args, env = api
    async with connect(*args, env=env) as session:
        result = await session.call_tool("generate", arguments)
    assert result.is_error
    [line] = text_of(result).splitlines()
    assert field in line and "Traceback" not in line
    assert fluxclaw_sandbox.api_key not in line
    assert fluxclaw_sandbox.requests() == []


async def test_remix_uploads_a_local_file(
    connect: Connect, api: tuple[list[str], dict[str, str]], fluxclaw_sandbox: Any, work: Path
) -> None:
    source = work / "photo.png"
    Image.new("RGB", (320, 240), (200, 30, 30)).save(source)
    args, env = api
    async with connect(*args, env=env) as session:
        result = await session.call_tool(
            "remix", {"prompt": "make it blue", "images": [str(source)], "model": "flex"}
        )
    text = text_of(result)
    assert not result.is_error, text
    assert "flux-2-flex-remix-image" in text and len(media_urls(text)) == 1
    [path] = saved_paths(text)
    assert path.is_file()
    methods = [r["method"] for r in fluxclaw_sandbox.requests()]
    paths = [r["path"] for r in fluxclaw_sandbox.requests()]
    # uploaded through the Files API (prepare, PUT, confirm) before the remix was created
    prepare, create = paths.index("/api/v1/files/prepare"), paths.index(CREATES[1])
    assert prepare < methods.index("PUT") < paths.index("/api/v1/files/confirm") < create
    [task] = fluxclaw_sandbox.tasks()
    assert task["status"] == "completed"


async def test_remix_missing_file_is_a_tool_error(
    connect: Connect, api: tuple[list[str], dict[str, str]], fluxclaw_sandbox: Any, work: Path
) -> None:
    args, env = api
    async with connect(*args, env=env) as session:
        result = await session.call_tool(
            "remix", {"prompt": "make it blue", "images": [str(work / "missing.png")]}
        )
    assert result.is_error and "images[0]" in text_of(result)
    assert fluxclaw_sandbox.requests() == []


async def test_estimate_price_matches_the_contract_and_balance(
    connect: Connect, api: tuple[list[str], dict[str, str]], fluxclaw_sandbox: Any
) -> None:
    args, env = api
    async with connect(*args, env=env) as session:
        for family in ("pro", "flex"):
            for resolution in contract.RESOLUTIONS:
                result = await session.call_tool(
                    "estimate_price", {"model": family, "resolution": resolution, "count": 3}
                )
                unit = contract.price_cents(family, resolution)
                assert unit is not None
                assert result.structured_content["total_cents"] == 3 * unit
                assert f"${3 * unit / 100:.2f}" in text_of(result)
        unknown = await session.call_tool("estimate_price", {"model": "max"})
        bad = await session.call_tool("estimate_price", {"model": "ultra"})
        balance = await session.call_tool("balance", {})
    assert not unknown.is_error and "not published" in text_of(unknown)
    assert bad.is_error and "ultra" in text_of(bad)
    assert not balance.is_error and text_of(balance).startswith("balance: $")
    assert [r["path"] for r in fluxclaw_sandbox.requests()] == ["/api/v1/me/balance"]


async def test_wrong_key_is_a_one_line_tool_error_without_the_key(
    connect: Connect, api: tuple[list[str], dict[str, str]]
) -> None:
    args, env = api
    wrong = "sk-wrong-SECRET-1234"
    async with connect(*args, env={**env, "RUNAPI_API_KEY": wrong}) as session:
        result = await session.call_tool("generate", {"prompt": "a red bicycle"})
    [line] = text_of(result).splitlines()
    assert result.is_error and wrong not in line and "Traceback" not in line


async def test_sandbox_flag_needs_no_key(connect: Connect, work: Path) -> None:
    async with connect(
        "--sandbox", "--output-dir", "out", env={"FLUXCLAW_SANDBOX_SPEED": "100"}
    ) as (session):
        result = await session.call_tool("generate", {"prompt": "a lighthouse in fog"})
    text = text_of(result)
    assert not result.is_error, text
    [url] = media_urls(text)
    assert url.startswith("http://127.0.0.1:")
    [path] = saved_paths(text)
    assert path.parent == work / "out" and path.is_file()


async def test_failed_and_timed_out_tasks_are_tool_errors(
    connect: Connect, api: tuple[list[str], dict[str, str]], fluxclaw_sandbox: Any
) -> None:
    args, env = api
    async with connect(*args, "--timeout", "1", env=env) as session:
        fluxclaw_sandbox.configure(faults={"fail": 1.0})
        failed = await session.call_tool("generate", {"prompt": "a red bicycle"})
        fluxclaw_sandbox.configure(faults={})
        slow = "a slow red bicycle [sandbox:seconds=60]"  # far past the 1 s tool timeout
        late = await session.call_tool("generate", {"prompt": slow})
        task_id = (late.structured_content or {}).get("task_id") or text_of(late).split()[1]
        pending = await session.call_tool("status", {"task_id": task_id})
        still = fluxclaw_sandbox.task(task_id)["status"]
    [line] = text_of(failed).splitlines()
    assert failed.is_error and "failed" in line and "Traceback" not in line
    [line] = text_of(late).splitlines()
    assert late.is_error and f'status tool with task_id "{task_id}"' in line
    assert not pending.is_error
    assert f"is {still}" in text_of(pending) or "is processing" in text_of(pending)
    assert still in ("pending", "processing")


async def test_mcp_tasks_are_in_the_history(
    connect: Connect,
    api: tuple[list[str], dict[str, str]],
    fluxclaw_sandbox: Any,
    cli_env: dict[str, str],
    work: Path,
) -> None:
    args, env = api
    async with connect(*args, env=env) as session:
        result = await session.call_tool("generate", {"prompt": "a brass compass on a map"})
    assert not result.is_error, text_of(result)
    task_id = result.structured_content["task_id"]
    listed = subprocess.run(
        [FLUXCLAW, "history", "--json"],
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["task_id"] == task_id and row["status"] == "completed"
    assert row["prompt"] == "a brass compass on a map" and row["cost"] == 0.05
    assert row["base_url"] == fluxclaw_sandbox.base_url and not row["sandbox"]
    assert row["paths"] == result.structured_content["paths"]


async def test_an_unknown_task_id_does_not_exist_and_leaves_no_row(
    connect: Connect,
    api: tuple[list[str], dict[str, str]],
    fluxclaw_sandbox: Any,
    cli_env: dict[str, str],
) -> None:
    """A 404 says the task does not exist (never "may still finish"), as the CLI says it, and
    nothing is left behind for a later resume to trip on."""
    args, env = api
    unknown = str(uuid.uuid4())
    async with connect(*args, env=env) as session:
        result = await session.call_tool("status", {"task_id": unknown})
    [line] = text_of(result).splitlines()
    assert result.is_error and unknown in line and "No task has this id there" in line
    assert "may still finish" not in line
    assert any(unknown in r["path"] for r in fluxclaw_sandbox.requests())  # it was asked
    listed = subprocess.run(
        [FLUXCLAW, "history", "--json"],
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert listed.returncode == 0 and listed.stdout == ""
