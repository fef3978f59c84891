"""Keeping the API key out of every text fluxclaw writes: one registry of secrets, one scrub.

Every key fluxclaw is given (argument, environment or config file) is remembered here, and every
error message, task error text, history row, log line and traceback passes through `scrub`, so a
server that echoes the key back, or a key from a source a door did not think of, cannot leak.
A long key is removed with the whole token around it; a short one (a sandbox's `e`) only where
it stands as a token of its own, so ids and words that happen to contain it stay readable.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
# Characters a key is made of: a token is a run of them.
_TOKEN = r"[A-Za-z0-9_\-]"
# Keys this short could occur inside ordinary words and ids by chance.
_SHORT = 8

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def remember(*keys: str | None) -> None:
    """Add keys to the process-wide set that `scrub` removes (blank values are ignored)."""
    global _pattern
    fresh = {key.strip() for key in keys if key and key.strip()} - _secrets
    if not fresh:
        return
    with _lock:
        _secrets.update(fresh)
        _pattern = _compile(_secrets)


def _compile(secrets: set[str]) -> re.Pattern[str]:
    """Each key as a literal (a short one only where it stands alone). Nothing here repeats
    over a run of letters, so a search is linear in the text: the token around a long key is
    found by `scrub` walking out from the match, never by the pattern backtracking."""
    parts = []
    for secret in sorted(secrets, key=len, reverse=True):
        escaped = re.escape(secret)
        if len(secret) >= _SHORT:
            parts.append(escaped)
        else:
            parts.append(f"(?<!{_TOKEN}){escaped}(?!{_TOKEN})")
    return re.compile("|".join(parts))


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def scrub(text: str, *extra: str | None) -> str:
    """`text` with every remembered key (and any in `extra`) replaced by `***`: a long key
    with the whole token around it. Linear in the length of `text`."""
    if any(extra):
        remember(*extra)
    pattern = _pattern
    if pattern is None or not text:
        return text
    pieces: list[str] = []
    done = 0  # text[:done] is settled
    size = len(text)
    for match in pattern.finditer(text):
        start, end = match.span()
        if start < done:
            continue  # inside a token already masked
        if end - start >= _SHORT:  # a long key: the whole token goes
            while start > done and text[start - 1] in _TOKEN_CHARS:
                start -= 1
            while end < size and text[end] in _TOKEN_CHARS:
                end += 1
        pieces.append(text[done:start])
        pieces.append(MASK)
        done = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def one_line(text: str) -> str:
    """`scrub`bed and folded onto one line: how every door shows an error."""
    return " ".join(scrub(text).split())


class ScrubbingFormatter(logging.Formatter):
    """Scrubs the whole formatted record, traceback included (a filter sees only the message)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def log_to_stderr(fmt: str, level: int) -> logging.Handler:
    """One stderr handler on the `fluxclaw` logger whose every line is scrubbed."""
    logger = logging.getLogger("fluxclaw")
    for handler in logger.handlers:
        if isinstance(handler.formatter, ScrubbingFormatter):
            break
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(ScrubbingFormatter(fmt))
        logger.addHandler(handler)
    logger.setLevel(level)
    return handler
