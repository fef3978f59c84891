"""Counts of kept promises per area, for docs/reliability.md (`--write-reliability`)."""

from __future__ import annotations

from collections import defaultdict

RESULTS: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
FIGURES: dict[str, list[str]] = defaultdict(list)

INTRO = """# Reliability

What fluxclaw promises when the server, the network or the input is hostile, and how many
cases kept each promise in the last recorded run. Everything runs on loopback: a raw hostile
server (`tests/reliability/hostile.py`), the sandbox with injected faults, and the real CLI and
MCP server as subprocesses.

Limits fluxclaw enforces (all in the code, each refused with a typed error):

- API answers: at most 4 MiB (`transport.MAX_ANSWER_BYTES`), counted after decompression.
- Images: at most 32 MiB (`files.MAX_IMAGE_BYTES`), gzip inflated a megabyte at a time, and at
  most 4096 x 4096 pixels (`saving.MAX_PIXELS`) read from the header before decoding; every
  image is checked whole (PNG CRCs, JPEG/WebP decode) before it is written.
- Callback bodies: at most 256 KiB, refused before they are read.
- Time: each request, download or upload ends within `request_timeout` (60 s) in all, however
  the server spaces its bytes; `--timeout` (CLI, MCP) bounds the whole job and
  `generate(timeout=...)` the create and the wait.
- Task ids are canonical UUIDs at create and in every status answer (which must repeat the
  same id); image URLs are http(s); no server value becomes part of a file path.
- The key (from an argument, RUNAPI_API_KEY or the config file) is scrubbed from every error,
  history row, log line and traceback, in time linear in the text; it is sent only to the API's
  own origin. A prompt, name, source or callback URL that holds a key of 16 or more characters
  as a token is refused before sending; plain `http://` to a host that is not loopback needs
  `--allow-http` (`allow_http=True`) and is said on stderr each time.
- A completed answer keeps at most 4 images (`contract.TASK_MAX_IMAGES`; a task makes one).

Round 2 added (since `484d968`):

- Batch files are read as a stream, three times (plan, run, manifest), never whole: a line (or
  CSV cell) of at most 1 MiB (`contract.BATCH_MAX_LINE_BYTES`), JSON nested at most 32 deep, at
  most 100,000 rows (`contract.BATCH_MAX_ROWS`); a row past a limit is a bad row with its own
  line number, a line past 1 MiB refuses the file (exit 4).
- State files (history, its `-wal` and `-shm`, the config) are 0600 from the start; one that
  cannot be opened, parsed or written is one error naming it. A config file that does not
  parse, or that another user owns or can write, is refused. A history write that fails after a
  create names the task and `fluxclaw resume ID`.
- The callback receiver holds at most 256 connections (one more is closed at once), closes one
  idle or half-sent for 5 s, gives a request 10 s, and outlives running out of file
  descriptors; while it refuses, the waits poll.
"""


def record(area: str, case: str, broken: list[str]) -> None:
    RESULTS[area].append((case, broken))


def figure(area: str, line: str) -> None:
    FIGURES[area].append(line)


def render(command: str, machine: str) -> str:
    lines = [INTRO, f"Command: `{command}`. Machine: {machine}.", ""]
    lines += ["| area | cases | kept their promise |", "|---|---|---|"]
    for area, rows in RESULTS.items():
        kept = sum(1 for _, broken in rows if not broken)
        lines.append(f"| {area} | {len(rows)} | {kept} |")
    for area, rows in RESULTS.items():
        if area.startswith("round 2"):  # each case by name: what the round was about
            lines += ["", f"## {area}", ""]
            lines += [f"- {line}" for line in FIGURES.get(area, [])]
            for case, broken in sorted(rows):
                kept = "kept" if not broken else f"**broken**: {'; '.join(broken)}"
                lines.append(f"- {case}: {kept}")
            continue
        failed = [(case, broken) for case, broken in rows if broken]
        if failed or FIGURES.get(area):
            lines += ["", f"## {area}", ""]
            lines += [f"- {line}" for line in FIGURES.get(area, [])]
            lines += [f"- **broken** {case}: {'; '.join(b)}" for case, b in failed]
    return "\n".join(lines) + "\n"
