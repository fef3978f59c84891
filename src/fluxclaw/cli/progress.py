"""Progress on stderr: a live spinner on a terminal, one line per change anywhere else.

Stdout carries only results (paths or JSON), so scripts and agents can read it untouched.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Progress:
    """`every`: the fewest seconds between two status lines when not on a terminal (a batch
    of thousands of rows changes status too often to print each change)."""

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, every: float = 0.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.every = every
        self._printed = float("-inf")
        self.live = not quiet and self.stream.isatty()
        self._started = time.monotonic()
        self._label = ""
        self._status = ""
        self._pending = False  # a status not printed yet (held back by `every`)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, message: str) -> None:
        """A line that stays (task id, saved file), printed above the spinner."""
        if self.quiet:
            return
        with self._lock:
            if self.live:
                self.stream.write("\r\033[K")
            self.stream.write(message + "\n")
            self.stream.flush()

    def begin(self, label: str) -> None:
        self._label = label
        self._started = time.monotonic()
        if self._thread is None and (self.live or (self.every > 0 and not self.quiet)):
            self._stop.clear()
            target = self._spin if self.live else self._trail
            self._thread = threading.Thread(target=target, daemon=True)
            self._thread.start()

    def status(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        self._pending = True
        if not self.live and time.monotonic() - self._printed >= self.every:
            self._print_status()

    def _print_status(self) -> None:
        self._pending = False
        self._printed = time.monotonic()
        self.note(f"{self._label}: {self._status} ({self.elapsed():.1f}s)")

    def _trail(self) -> None:
        """Off a terminal: a change held back by `every` is printed once its time comes, so a
        log never lags the run by more than `every` (rows saved, nothing said, is not)."""
        while not self._stop.wait(min(self.every, 0.25)):
            if self._pending and time.monotonic() - self._printed >= self.every:
                self._print_status()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def end(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self.live:
                with self._lock:
                    self.stream.write("\r\033[K")
                    self.stream.flush()

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            with self._lock:
                text = f"{FRAMES[frame % len(FRAMES)]} {self._label}: {self._status or 'starting'}"
                self.stream.write(f"\r\033[K{text} {self.elapsed():.1f}s")
                self.stream.flush()
            frame += 1
