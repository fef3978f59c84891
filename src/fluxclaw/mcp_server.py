"""fluxclaw as an MCP server: generate, remix, status, estimate_price and balance as tools.

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

from fluxclaw import contract, errors, jobs, redaction
from fluxclaw._version import __version__
from fluxclaw.client import AsyncClient
from fluxclaw.config import AGENT_OUTPUT_DIR, AGENT_WAIT_TIMEOUT
from fluxclaw.history import History
from fluxclaw.models import TaskStatus, failed_error
from fluxclaw.polling import PollPolicy
from fluxclaw.pricing import estimate_cost

log = logging.getLogger("fluxclaw.mcp")

THUMBNAIL_PX = 256

INSTRUCTIONS = (
    "Flux 2 image generation through RunAPI. Each generate/remix call is charged (see "
    "estimate_price); ask before expensive runs. Results list one MEDIA:<url> line per image: "
    "copy those lines into your reply, each on its own line, to show the images. If a call "
    "times out, the task keeps running: fetch it with the status tool instead of generating again."
)

Prompt = Annotated[
    str,
    Field(description=f"What to draw ({contract.PROMPT_MIN} to {contract.PROMPT_MAX} characters)."),
]
Model = Annotated[
    str,
    Field(
        description=f"{contract.DEFAULT_FAMILY} (default), flex or max "
        f"(max: {contract.restrictions('max')}), or a full model id such as "
        f"{contract.model_for(contract.DEFAULT_FAMILY, 'text_to_image').id}."
    ),
]
Ratio = Annotated[
    str | None,
    Field(
        description=f"Aspect ratio: {', '.join(contract.ASPECT_RATIOS)} "
        f"(default {contract.DEFAULT_ASPECT_RATIO})."
    ),
]
RemixRatio = Annotated[
    str | None,
    Field(
        description=f"Aspect ratio: {', '.join(contract.ratios_for('remix_image'))} (default "
        f"{contract.DEFAULT_ASPECT_RATIO}; {contract.AUTO_RATIO} keeps the first source image's "
        "ratio, not for max)."
    ),
]
Resolution = Annotated[
    str | None,
    Field(
        description=f"Output resolution: {', '.join(contract.RESOLUTIONS)} (default "
        f"{contract.DEFAULT_RESOLUTION}; max: {', '.join(contract.resolutions_for('max'))} only)."
    ),
]


class FluxclawTools:
    """The tools, bound to one client, one output folder and one wait timeout."""

    def __init__(
        self,
        client: AsyncClient,
        output_dir: Path,
        *,
        timeout: float = AGENT_WAIT_TIMEOUT,
        history: History | None = None,
        sandbox: bool = False,
    ) -> None:
        self.client = client
        self.output_dir = output_dir
        self.timeout = timeout
        # Every task goes into the history (`fluxclaw history`); the status tool finds it there.
        self.history = history
        self.sandbox = sandbox

    # -- tools -----------------------------------------------------------------------------------

    async def generate(
        self,
        prompt: Prompt,
        ctx: Context[Any, Any],
        model: Model = contract.DEFAULT_FAMILY,
        aspect_ratio: Ratio = None,
        resolution: Resolution = None,
    ) -> CallToolResult:
        """Generate an image from a text prompt with Flux 2, wait for it, and save it.

        Charged per image (estimate_price tells how much). Returns one MEDIA:<url> line per
        image, the saved file paths, the cost, and a thumbnail.
        """
        return await self._run(ctx, "text_to_image", prompt, (), model, aspect_ratio, resolution)

    async def remix(
        self,
        prompt: Prompt,
        images: Annotated[
            list[str],
            Field(
                description=f"Source images ({contract.source_span()}; max: "
                f"{contract.source_span('max')}): http(s) URLs or local file paths."
            ),
        ],
        ctx: Context[Any, Any],
        model: Model = contract.DEFAULT_FAMILY,
        aspect_ratio: RemixRatio = None,
        resolution: Resolution = None,
    ) -> CallToolResult:
        """Edit or combine source images following a prompt, with Flux 2; wait and save.

        Local files are uploaded first (temporary URLs). Charged like generate.
        """
        return await self._run(ctx, "remix_image", prompt, images, model, aspect_ratio, resolution)

    async def status(
        self,
        task_id: Annotated[str, Field(description="The task id a generate or remix reported.")],
    ) -> CallToolResult:
        """Check a task once by its id (no new charge); when completed, save and return it.

        Use it after a timeout or an interruption instead of generating again.
        """
        try:
            found = await jobs.alook(self.client, task_id, self.history)
            if found.status == "failed":
                raise failed_error(found)
            if found.status != "completed":
                text = (
                    f"task {found.task_id} is {found.status}; call the status tool again in a few "
                    "seconds."
                )
                return CallToolResult(
                    content=[TextContent(text=text)],
                    structured_content={"task_id": found.task_id, "status": found.status},
                )
            done = await jobs.afinish(
                self.client, found.task_id, history=self.history, adopted_output=self._folder()
            )
            entry = self.history.find(found.task_id) if self.history else None
            return self._deliver(done, entry.model or None if entry else None)
        except Exception as error:  # every failure becomes a tool error
            return self._error(error)

    async def estimate_price(
        self,
        model: Model = contract.DEFAULT_FAMILY,
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
        model: str,
        aspect_ratio: str | None,
        resolution: str | None,
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

        job = jobs.Job(
            action=action,
            prompt=prompt,
            sources=tuple(sources),
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            output=self._folder(),
        )
        try:
            done = await jobs.arun(
                self.client,
                job,
                history=self.history,
                timeout=self.timeout,
                on_update=on_update,
                sandbox=self.sandbox,
            )
            delivered = self._deliver(done, done.result.model if done.result else None)
            await ctx.report_progress(updates + 1, updates + 1, f"task {done.task_id}: saved")
            return delivered
        except errors.TaskTimeoutError as error:
            task_id = error.task_id
            return self._error(
                errors.TaskTimeoutError(
                    f"task {task_id} is not finished after {self.timeout:g}s; it keeps running. "
                    f'Call the status tool with task_id "{task_id}" later to fetch it '
                    "(no new charge).",
                    task_id=task_id,
                )
            )
        except Exception as error:
            return self._error(error)

    def _folder(self) -> str:
        return os.path.join(str(self.output_dir), "")

    def _deliver(self, done: jobs.JobResult, model: str | None) -> CallToolResult:
        """Answer with URLs, saved paths, cost and thumbnails (the engine saved each file once)."""
        with_model = f" with {model}" if model else ""
        cost = "unknown" if done.cost_usd is None else f"${done.cost_usd:.2f}"
        lines = [
            f"task {done.task_id} completed: {len(done.paths)} image(s){with_model}, cost {cost}.",
            *(f"saved: {path}" for path in done.paths),
            *(f"MEDIA:{url}" for url in done.urls),
        ]
        content: list[ContentBlock] = [TextContent(text="\n".join(lines))]
        content += [_thumbnail(path) for path in done.paths]
        return CallToolResult(content=content, structured_content=done.to_dict())

    def _error(self, error: BaseException) -> CallToolResult:
        """One scrubbed line with isError; a bug is logged (stderr) but not shown in full."""
        if isinstance(error, errors.FluxclawError):
            text = str(error)
            log.info("tool error: %s", redaction.one_line(text))
        else:
            log.error("unexpected error", exc_info=log.isEnabledFor(logging.DEBUG))
            text = f"internal error ({type(error).__name__}: {error})"
        return CallToolResult(content=[TextContent(text=redaction.one_line(text))], is_error=True)


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
    server.add_tool(tools.status, name="status", annotations=read)
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
    history: History | None = None,
    sandbox: bool = False,
) -> None:
    """Serve over stdin/stdout until the client disconnects."""
    async with AsyncClient(api_key=api_key, base_url=base_url, poll=poll) as client:
        tools = FluxclawTools(
            client,
            Path(output_dir).expanduser().resolve(),
            timeout=timeout,
            history=history,
            sandbox=sandbox,
        )
        await build_server(tools).run_stdio_async()


__all__ = ["FluxclawTools", "build_server", "serve"]
