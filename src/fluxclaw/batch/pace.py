"""How many rows run at once: up to `--concurrency`, halved by each rate limit, then won back
one success at a time (additive increase, multiplicative decrease, as TCP does)."""

from __future__ import annotations

import asyncio


class Pace:
    def __init__(self, limit: int) -> None:
        self.ceiling = max(1, limit)
        self.limit = float(self.ceiling)
        self.active = 0
        self._changed = asyncio.Condition()
        self.slowdowns = 0

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < int(self.limit))
            self.active += 1

    async def release(self, *, succeeded: bool) -> None:
        async with self._changed:
            self.active -= 1
            if succeeded and self.limit < self.ceiling:
                self.limit = min(self.ceiling, self.limit + 1 / self.limit)
            self._changed.notify_all()

    def slow_down(self) -> None:
        """A 429 got through the client's own retries: run half as many at once."""
        self.limit = max(1.0, self.limit / 2)
        self.slowdowns += 1
