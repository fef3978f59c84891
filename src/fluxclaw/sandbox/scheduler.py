"""Ends every task at its finish time (charge, callback) whether or not anyone polls for it.

A status poll settles a due task itself (state.status); this background loop covers the tasks
nobody asks about, sleeping until the next finish time or until a new task wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import StatelessLifespan

from fluxclaw import contract
from fluxclaw.sandbox.callbacks import CallbackSender
from fluxclaw.sandbox.state import SandboxState, Task


async def run_scheduler(state: SandboxState, wake: asyncio.Event) -> None:
    while True:
        state.settle_due(time.time())
        due = state.next_due()
        wake.clear()
        timeout = None if due is None else max(0.0, due - time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


def lifespan(state: SandboxState) -> StatelessLifespan[Starlette]:
    """The app's lifespan: the scheduler and callback deliveries run while the app serves."""
    sender = CallbackSender()

    def on_settle(task: Task) -> None:
        url = task.request.get("callback_url")
        if contract.is_present(url):
            envelope = task.envelope(task.status_at(task.finished_at))
            sender.send(str(url), envelope, task.callback_deliveries, state.config.speed)

    @contextlib.asynccontextmanager
    async def serving(app: Starlette) -> AsyncIterator[None]:
        wake = asyncio.Event()
        state.on_new_task = wake.set
        state.on_settle = on_settle
        scheduler = asyncio.get_running_loop().create_task(run_scheduler(state, wake))
        try:
            yield
        finally:
            state.on_new_task = None
            state.on_settle = None
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await sender.aclose()

    return serving
