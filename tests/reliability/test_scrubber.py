"""Redaction is linear in its input: a hostile answer of long letter runs (under the 4 MiB cap)
cannot make scrubbing it take quadratic time, and so stall a command or an MCP server."""

from __future__ import annotations

import time

from fluxclaw import redaction

KEY = "sk-live-0123456789abcdefXYZ"


def _cost(text: str) -> float:
    best = float("inf")
    for _ in range(5):  # the best of five: other work on the machine only adds time
        started = time.thread_time()  # CPU time: other processes on the machine add nothing
        redaction.scrub(text)
        best = min(best, time.thread_time() - started)
    return best


def test_scrubbing_sixteen_times_the_input_costs_about_sixteen_times() -> None:
    redaction.remember(KEY, "e")  # a long key and a one-letter one, as the sandbox allows
    small = ("https://img.example/" + "a" * 25_000 + " ") * 4  # 100 KB of long letter runs
    ratio = _cost(small * 16) / _cost(small)
    assert ratio < 64, f"16x the input cost {ratio:.0f}x (quadratic would be ~256x)"


def test_it_still_masks_what_it_must() -> None:
    redaction.remember(KEY, "e")
    text = f"Bearer x{KEY}y, url=a.{KEY}.b, e, eel, {KEY}{KEY}"
    assert redaction.scrub(text) == "Bearer ***, url=a.***.b, ***, eel, ***"
