"""How long a sandbox task takes: seeded lognormal draws around the contract's typical times.

Real generation times vary, and a client's poll schedule must cope with that spread, so the
sandbox draws each duration instead of using a constant; a seed makes a test run reproducible.
"""

from __future__ import annotations

import math
import random
import re
from typing import Final

from fluxclaw import contract

SIGMA: Final = 0.25
QUEUE_SHARE: Final = 0.05  # the pending phase, as a share of the whole duration

_SECONDS_TAG: Final = re.compile(r"\[sandbox:seconds=(\d+(?:\.\d*)?|\.\d+)\]")
FAIL_TAG: Final = "[sandbox:fail]"


def pinned_seconds(prompt: str) -> float | None:
    """`[sandbox:seconds=N]` pins a task's wall-clock duration, regardless of the speed setting."""
    match = _SECONDS_TAG.search(prompt)
    return None if match is None else float(match.group(1))


class Durations:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self, family: contract.Family, resolution: str, speed: float) -> float:
        median = contract.typical_seconds(family, resolution)
        return median * math.exp(SIGMA * self._rng.gauss(0.0, 1.0)) / max(speed, 1e-9)
