"""Task images at /_images, rendered on demand from the prompt and the sandbox's own sources.

Each is served in its task's format (PNG, JPEG or WebP, named by the URL's extension and the
Content-Type) and, for a task that asked for it, signed with C2PA Content Credentials.

The sandbox never fetches a URL: one it issued (a stored file, another task's image) is read
from memory, and any other stands for itself, so a remix and a URL upload work offline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fluxclaw import contract
from fluxclaw.sandbox import images
from fluxclaw.sandbox.callbacks import is_loopback_url
from fluxclaw.sandbox.responses import not_found
from fluxclaw.sandbox.state import SandboxState, Task

MAX_DEPTH: Final = 4  # how many remixes of remixes are rendered from their sources


class Renders:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def image(self, request: Request) -> Response:
        task = self.state.tasks.get(request.path_params["task_id"])
        if (
            task is None
            or request.path_params["name"] != task.image_name
            or self.state.status(task, time.time()) != "completed"
        ):
            return not_found("Image not found")
        data = await asyncio.to_thread(self.render, task)
        return Response(
            data,
            200,
            {"Cache-Control": "public, max-age=604800"},
            media_type=images.FORMATS[task.image_format],
        )

    def render(self, task: Task, depth: int = 0) -> bytes:
        """A task's image; runs in a worker thread so that the event loop keeps answering."""
        request = task.request
        sources = [
            self.source(str(url), task.base_url, depth)
            for url in request.get("source_image_urls") or []
        ]
        ratio = request.get("aspect_ratio")
        if not contract.is_present(ratio):
            ratio = contract.DEFAULT_ASPECT_RATIO
        if ratio == contract.AUTO_RATIO:
            known = sources[0].data if sources else None
            ratio = (images.source_ratio(known) if known else None) or contract.DEFAULT_ASPECT_RATIO
        size = contract.image_size(str(ratio), task.resolution)
        signer = self.state.signer if task.c2pa else None
        return self.state.images.get(
            str(request["prompt"]),
            size,
            sources,
            task.image_format,
            signer=signer,
            model=task.model.id,
        )

    def source(self, url: str, base_url: str, depth: int = 0) -> images.Source:
        """A URL with its bytes when the sandbox issued it, else the URL alone."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return images.Source(url)
        own = urlsplit(base_url)
        same_host = parts.netloc == own.netloc or (
            is_loopback_url(url) and is_loopback_url(base_url) and parts.port == own.port
        )
        if not same_host:
            return images.Source(url)
        segments = parts.path.split("/")
        if len(segments) >= 4 and segments[1] == "_files":
            stored = self.state.files.get(segments[2])
            if stored is not None:
                return images.Source(url, stored.data)
        if len(segments) == 4 and segments[1] == "_images" and depth < MAX_DEPTH:
            made = self.state.tasks.get(segments[2])
            if made is not None and made.status_at(time.time()) == "completed":
                return images.Source(url, self.render(made, depth + 1))
        return images.Source(url)

    def url_bytes(self, url: str, base_url: str) -> bytes:
        """A sandbox-issued URL's bytes; for any other host, a placeholder naming the URL."""
        source = self.source(url, base_url)
        if source.data is not None:
            return source.data
        return self.state.images.get(f"remote file: {url}", (512, 512))


def routes(state: SandboxState) -> list[Route]:
    return [Route("/_images/{task_id}/{name}", Renders(state).image)]
