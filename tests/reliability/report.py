"""Counts of kept promises per area, written to docs/reliability.md by `--write-reliability`."""

from __future__ import annotations

from collections import defaultdict

RESULTS: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)


def record(area: str, case: str, broken: list[str]) -> None:
    RESULTS[area].append((case, broken))
