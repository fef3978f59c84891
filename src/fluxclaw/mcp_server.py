"""fluxclaw as an MCP server: generate, remix, get_task, estimate_price and balance as tools.

Built on the official `mcp` SDK's `MCPServer` over one `AsyncClient`. Every tool answers with a
`CallToolResult` it builds itself, so failures reach the model as one line with `isError` set
(never a traceback, never the key). Results carry the image URLs as `MEDIA:<url>` lines because
OpenClaw drops local paths from MCP results, plus the saved paths, structured content and a small
thumbnail the model can look at.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from fluxclaw import contract, errors, files, transport
from fluxclaw._version import __version__
from fluxclaw.client import AsyncClient
from fluxclaw.config import AGENT_OUTPUT_DIR, AGENT_WAIT_TIMEOUT, ENV_API_KEY
from fluxclaw.core import CreateOptions
from fluxclaw.models import Result, Task, TaskStatus, result_from
from fluxclaw.polling import PollPolicy
from fluxclaw.pricing import estimate_cost

log = logging.getLogger("fluxclaw.mcp")

THUMBNAIL_PX = 256

INSTRUCTIONS = (
    "Flux 2 image generation through RunAPI. Each generate/remix call is charged (see "
    "estimate_price); ask before expensive runs. Results list one MEDIA:<url> line per image: "
    "copy those lines into your reply, each on its own line, to show the images. If a call "
    "times out, the task keeps running: fetch it with get_task instead of generating again."
)

Prompt = Annotated[str, Field(description="What to draw (3 to 5000 characters).")]
Model = Annotated[
    str,
    Field(description="pro (default), flex or max, or a full model id such as flux-2-pro."),
]
Ratio = Annotated[
    str | None,
    Field(description=f"Aspect ratio: {', '.join(contract.ASPECT_RATIOS)} (default 1:1)."),
]
RemixRatio = Annotated[
    str | None,
    Field(
        description=f"Aspect ratio: {', '.join(contract.ASPECT_RATIOS)} or auto "
        "(default: follow the first source image)."
    ),
]
Resolution = Annotated[
    str | None,
    Field(description=f"Output resolution: {', '.join(contract.RESOLUTIONS)} (default 1k)."),
]


class FluxclawTools:
    """The tools, bound to one client, one output folder and one wait timeout."""

    def __init__(
        self,
        client: AsyncClient,
        output_dir: Path,
        *,
        timeout: float = AGENT_WAIT_TIMEOUT,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self.client = client
        self.output_dir = output_dir
        self.timeout = timeout
        self.secrets = [secret for secret in secrets if secret]
        # Tasks this server submitted: get_task then knows their action, model and prompt.
        self.tasks: dict[str, Task] = {}

    # -- tools -----------------------------------------------------------------------------------

    async def generate(
        self,
        prompt: Prompt,
        ctx: Context[Any, Any],
        model: Model = "pro",
        aspect_ratio: Ratio = None,
        resolution: Resolution = None,
    ) -> CallToolResult:
        """Generate an image from a text prompt with Flux 2, wait for it, and save it.

        Charged per image (estimate_price tells how much). Returns one MEDIA:<url> line per
        image, the saved file paths, the cost, and a thumbnail.
        """
        options = _options(model, aspect_ratio, resolution)
        return await self._run(ctx, "text_to_image", prompt, (), options)

    async def remix(
        self,
        prompt: Prompt,
        images: Annotated[
            list[str],
            Field(description="Source images (1 to 8): http(s) URLs or local file paths."),
        ],
        ctx: Context[Any, Any],
        model: Model = "pro",
        aspect_ratio: RemixRatio = None,
        resolution: Resolution = None,
    ) -> CallToolResult:
        """Edit or combine source images following a prompt, with Flux 2; wait and save.

        Local files are uploaded first (temporary URLs). Charged like generate.
        """
        options = _options(model, aspect_ratio, resolution)
        return await self._run(ctx, "remix_image", prompt, images, options)

    async def get_task(
        self,
        task_id: Annotated[str, Field(description="The task id a generate or remix reported.")],
    ) -> CallToolResult:
        """Check a task once by its id (no new charge); when completed, save and return it.

        Use it after a timeout or an interruption instead of generating again.
        """
        try:
            task = self.tasks.get(task_id)
            status = await self.client.get(task or task_id)
            if status.status == "failed":
                raise errors.TaskFailedError(
                    f"task {status.task_id} failed: {status.error or 'no reason given'}",
                    task_id=status.task_id,
                )
            if status.status != "completed":
                text = (
                    f"task {status.task_id} is {status.status}; call get_task again in a few "
                    "seconds."
                )
                return CallToolResult(
                    content=[TextContent(text=text)],
                    structured_content={"task_id": status.task_id, "status": status.status},
                )
            return await self._deliver(result_from(status, task))
        except Exception as error:  # every failure becomes a tool error
            return self._error(error)

    async def estimate_price(
        self,
        model: Model = "pro",
        resolution: Annotated[
            str, Field(description=f"{' or '.join(contract.RESOLUTIONS)}.")
        ] = contract.DEFAULT_RESOLUTION,
        count: Annotated[int, Field(description="Number of images.", ge=1)] = 1,
        remix: Annotated[bool, Field(description="Price a remix instead of a generation.")] = False,
    ) -> CallToolResult:
        """What a run would cost, from the published price table (no request, no charge)."""
        try:
            action: contract.Action = "remix_image" if remix else "text_to_image"
            found = estimate_cost(model, resolution, count, action=action)
        except Exception as error:
            return self._error(error)
        if found.unit_cents is None:
            text = (
                f"{found.model} at {found.resolution}: the price is not published; "
                "check runapi.ai before running."
            )
        else:
            text = (
                f"{found.model} at {found.resolution}: {_usd(found.unit_cents)} per image, "
                f"{_usd(found.total_cents)} for {found.count}."
            )
        data = {
            "model": found.model,
            "family": found.family,
            "resolution": found.resolution,
            "count": found.count,
            "unit_cents": found.unit_cents,
            "total_cents": found.total_cents,
            "total_usd": found.total_usd,
            "basis": found.basis,
        }
        return CallToolResult(content=[TextContent(text=text)], structured_content=data)

    async def balance(self) -> CallToolResult:
        """The RunAPI account's remaining balance."""
        try:
            found = await self.client.balance()
        except Exception as error:
            return self._error(error)
        cents = found.get("balance_cents")
        text = f"balance: {_usd(cents)}" if isinstance(cents, int) else "balance: unknown"
        return CallToolResult(content=[TextContent(text=text)], structured_content=found)

    # -- the work --------------------------------------------------------------------------------

    async def _run(
        self,
        ctx: Context[Any, Any],
        action: contract.Action,
        prompt: str,
        sources: Sequence[str],
        options: CreateOptions,
    ) -> CallToolResult:
        """Submit (validated first: an invalid call sends nothing), wait with progress, save."""
        updates = 0

        async def on_update(status: TaskStatus) -> None:
            nonlocal updates
            updates += 1
            waited = f" after {status.elapsed:.1f}s" if status.elapsed is not None else ""
            await ctx.report_progress(
                updates, None, f"task {status.task_id}: {status.status}{waited}"
            )

        task_id: str | None = None
        try:
            if action == "remix_image":
                task = await self.client.submit_remix(
                    prompt, sources, on_update=on_update, **options
                )
            else:
                task = await self.client.submit_generate(prompt, on_update=on_update, **options)
            task_id = task.id
            self.tasks[task.id] = task
            log.info("task %s submitted (%s)", task.id, options.get("model"))
            result = await self.client.wait(task, timeout=self.timeout, on_update=on_update)
            delivered = await self._deliver(result)
            await ctx.report_progress(updates + 1, updates + 1, f"task {task.id}: saved")
            return delivered
        except errors.TaskTimeoutError:
            assert task_id is not None
            return self._error(
                errors.TaskTimeoutError(
                    f"task {task_id} is not finished after {self.timeout:g}s; it keeps running. "
                    f'Call get_task with task_id "{task_id}" later to fetch it (no new charge).',
                    task_id=task_id,
                )
            )
        except Exception as error:
            return self._error(error)

    async def _deliver(self, result: Result) -> CallToolResult:
        """Save the images (once per task), then answer with URLs, paths, cost and thumbnails."""
        saved = self._already_saved(result)
        if saved is None:
            saved = [item.path for item in await self.client.save(result, self.output_dir)]
        model = f" with {result.model}" if result.model else ""
        cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.2f}"
        lines = [
            f"task {result.task_id} completed: {len(saved)} image(s){model}, cost {cost}.",
            *(f"saved: {path}" for path in saved),
            *(f"MEDIA:{image.url}" for image in result.images),
        ]
        content: list[ContentBlock] = [TextContent(text="\n".join(lines))]
        content += [_thumbnail(path) for path in saved]
        data = {**result.to_dict(), "paths": [str(path) for path in saved]}
        return CallToolResult(content=content, structured_content=data)

    def _already_saved(self, result: Result) -> list[Path] | None:
        """The files a previous call saved for this task, if all are there (get_task repeats)."""
        targets = files.target_paths(self.output_dir, len(result.images), result.task_id, None)
        found: list[Path] = []
        for base, _ in targets:
            matches = [
                base.with_name(base.name + suffix)
                for suffix in files.EXTENSIONS
                if base.with_name(base.name + suffix).is_file()
            ]
            if not matches:
                return None
            found.append(matches[0].resolve())
        return found

    def _error(self, error: BaseException) -> CallToolResult:
        """One scrubbed line with isError; a bug is logged (stderr) but not shown in full."""
        if isinstance(error, errors.FluxclawError):
            text = str(error)
            log.info("tool error: %s", self._scrub(text))
        else:
            log.error("unexpected error", exc_info=log.isEnabledFor(logging.DEBUG))
            text = f"internal error ({type(error).__name__}: {error})"
        return CallToolResult(content=[TextContent(text=self._scrub(text))], is_error=True)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = transport.redact(text, secret)
        return " ".join(text.split())


def _options(model: str, aspect_ratio: str | None, resolution: str | None) -> CreateOptions:
    options: CreateOptions = {"model": model}
    if aspect_ratio is not None:
        options["aspect_ratio"] = aspect_ratio
    if resolution is not None:
        options["resolution"] = resolution
    return options


def _usd(cents: int | None) -> str:
    return "unknown" if cents is None else f"${cents / 100:.2f}"


def _thumbnail(path: Path) -> ImageContent:
    """A JPEG at most THUMBNAIL_PX on its long side: enough for the model to see the image."""
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return ImageContent(data=base64.b64encode(buffer.getvalue()).decode(), mime_type="image/jpeg")


def build_server(tools: FluxclawTools) -> MCPServer[Any]:
    """An MCPServer exposing the five tools."""
    server: MCPServer[Any] = MCPServer(
        name="fluxclaw", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    paid = ToolAnnotations(read_only_hint=False, idempotent_hint=False, open_world_hint=True)
    read = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)
    server.add_tool(tools.generate, name="generate", annotations=paid)
    server.add_tool(tools.remix, name="remix", annotations=paid)
    server.add_tool(tools.get_task, name="get_task", annotations=read)
    server.add_tool(
        tools.estimate_price,
        name="estimate_price",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    server.add_tool(tools.balance, name="balance", annotations=read)
    return server


async def serve(
    api_key: str,
    base_url: str,
    *,
    poll: PollPolicy | None = None,
    output_dir: str | os.PathLike[str] = AGENT_OUTPUT_DIR,
    timeout: float = AGENT_WAIT_TIMEOUT,
) -> None:
    """Serve over stdin/stdout until the client disconnects."""
    async with AsyncClient(api_key=api_key, base_url=base_url, poll=poll) as client:
        tools = FluxclawTools(
            client,
            Path(output_dir).expanduser().resolve(),
            timeout=timeout,
            secrets=[api_key, os.environ.get(ENV_API_KEY)],
        )
        await build_server(tools).run_stdio_async()


__all__ = ["FluxclawTools", "build_server", "serve"]
