"""One library door (`Client` or `AsyncClient`) meeting every case, in a process of its own so
its peak memory is its own. Prints one JSON line per case. Run by test_hostile.py:

    python -m tests.reliability.door client|async BASE_URL ROOT DEADLINE CASE...
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import fluxclaw
from fluxclaw import errors
from fluxclaw.polling import PollPolicy

POLL = PollPolicy(time_scale=0.01)  # poll at once: the cases are about the answers


def run_sync(base_url: str, prompt: str, out: Path, deadline: float) -> None:
    with fluxclaw.Client(base_url=base_url, request_timeout=deadline, poll=POLL) as client:
        result = client.generate(prompt, timeout=deadline)
        client.save(result, out, timeout=deadline)


async def run_async(base_url: str, prompt: str, out: Path, deadline: float) -> None:
    async with fluxclaw.AsyncClient(
        base_url=base_url, request_timeout=deadline, poll=POLL
    ) as client:
        result = await client.generate(prompt, timeout=deadline)
        await client.save(result, out, timeout=deadline)


def peak_mb() -> float:
    """This process's own peak (VmHWM); ru_maxrss would include the parent's, from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    door, base_url, root, deadline = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    for name in sys.argv[5:]:
        out = root / name / "out"
        out.mkdir(parents=True)
        started = time.monotonic()
        outcome: dict[str, Any]
        try:
            if door == "client":
                run_sync(base_url, f"case={name}", out, deadline)
            else:
                asyncio.run(run_async(base_url, f"case={name}", out, deadline))
            outcome = {"ok": True}
        except errors.FluxclawError as error:
            outcome = {"ok": False, "type": type(error).__name__, "message": str(error)}
        except Exception as error:  # an untyped error is a broken promise, reported as such
            kind = f"untyped {type(error).__name__}"
            outcome = {"ok": False, "type": kind, "message": str(error)}
        outcome.update(
            case=name,
            elapsed=time.monotonic() - started,
            rss_mb=peak_mb(),
        )
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
