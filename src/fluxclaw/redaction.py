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
_pattern: tuple[re.Pattern[str] | None, re.Pattern[str] | None] | None = None


def remember(*keys: str | None) -> None:
    """Add keys to the process-wide set that `scrub` removes (blank values are ignored)."""
    global _pattern
    fresh = {key.strip() for key in keys if key and key.strip()} - _secrets
    if not fresh:
        return
    with _lock:
        _secrets.update(fresh)
        _pattern = _compile(_secrets)


def _compile(secrets: set[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """The long keys, and the short ones (only where they stand alone), each as literals.
    Nothing repeats over a run of letters, so a search is linear in the text: the token around
    a long key is found by `scrub` walking out from the match, never by backtracking. A short
    key's pattern starts with the key itself (its lookbehind comes after it), so the engine
    skips to each occurrence instead of trying every position."""
    ordered = sorted(secrets, reverse=True)  # a key before any key it is the start of
    long = [re.escape(s) for s in ordered if len(s) >= _SHORT]
    short = [
        f"{re.escape(s)}(?<!{_TOKEN}{re.escape(s)})(?!{_TOKEN})" for s in ordered if len(s) < _SHORT
    ]
    return (
        re.compile("|".join(long)) if long else None,
        re.compile("|".join(short)) if short else None,
    )


_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_WINDOW = 4096  # a token is walked in windows: C's strip, never a character at a time


def scrub(text: str, *extra: str | None) -> str:
    """`text` with every remembered key (and any in `extra`) replaced by `***`: a long key
    with the whole token around it. Linear in the length of `text`."""
    if any(extra):
        remember(*extra)
    long, short = _pattern or (None, None)
    if not text:
        return text
    if long is not None:
        text = _mask_tokens(long, short, text)
    if short is not None:
        text = short.sub(MASK, text)
    return text


def _mask_tokens(pattern: re.Pattern[str], short: re.Pattern[str] | None, text: str) -> str:
    """Each long key's token masked; a short key that overlaps that token (it may hold a `.`)
    is masked with it, so no part of it is left beside the mask."""
    pieces: list[str] = []
    done = 0  # text[:done] is settled
    for match in pattern.finditer(text):
        start, end = match.span()
        if start < done:  # begins inside a token already masked: the mask runs to its end
            if end > done:  # (walked only past `done`: each character once, linear in all)
                done = _token_end(text, end)
            continue
        start, end = _token_start(text, start, done), _token_end(text, end)
        if short is not None:  # a bounded look around the token: linear in all
            for near in short.finditer(text, max(done, start - _SHORT - 1), end + _SHORT + 1):
                if near.start() < end and near.end() > start:
                    start, end = min(start, near.start()), max(end, near.end())
        pieces.append(text[done:start])
        pieces.append(MASK)
        done = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _token_start(text: str, start: int, floor: int) -> int:
    while start > floor:
        low = max(floor, start - _WINDOW)
        kept = text[low:start].rstrip(_TOKEN_CHARS)
        start = low + len(kept)
        if kept:
            break
    return start


def _token_end(text: str, end: int) -> int:
    size = len(text)
    while end < size:
        high = min(size, end + _WINDOW)
        rest = text[end:high].lstrip(_TOKEN_CHARS)
        end = high - len(rest)
        if rest:
            break
    return end


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
