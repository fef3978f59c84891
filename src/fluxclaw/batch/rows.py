"""Reading a batch file (JSON Lines or CSV): one image request per row, each with its line.

Only the shape is checked here (fields, types, a safe name); whether a request is one RunAPI
accepts is the library's own validation (`Client.draft`), run on every row before anything is
sent. A row that fails either is reported with its line number and skipped; the rest run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxclaw import contract
from fluxclaw.files import FORMATS, ImageFormat

FIELDS = ("prompt", "model", "aspect_ratio", "resolution", "images", "name", "format")
# A name becomes a file name in the output folder: letters, digits, dot, dash, underscore.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")  # control characters but tab and line feed


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    images: tuple[str, ...] = ()
    name: str | None = None
    format: ImageFormat | None = None

    def fingerprint(self) -> str:
        """The fingerprint journals of releases before the ledger gave a row (defaults applied,
        sources resolved); `batch.legacy` matches their rows by it."""
        data = [self.prompt, self.model, self.aspect_ratio, self.resolution, self.images]
        data += [self.name, self.format]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    error: str


class BadFile(ValueError):
    """The file as a whole cannot be read as rows (the message says where and why)."""


LINE_MAX = contract.BATCH_MAX_LINE_BYTES
NESTING_MAX = contract.BATCH_MAX_NESTING


class RowFile:
    """A batch file as rows, read again from disk on every iteration: a plan reads it once to
    decide, a run again to send, the manifest once more, and none holds more than a row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[Row | BadRow]:
        return iter_rows(self.path)

    def __repr__(self) -> str:
        return f"RowFile({str(self.path)!r})"


def read_rows(path: Path) -> tuple[list[Row], list[BadRow]]:
    """Every row of a (small) file in memory; `RowFile` reads a file of any size as a stream."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    for item in iter_rows(path):
        if isinstance(item, Row):
            rows.append(item)
        else:
            bad.append(item)
    return rows, bad


def iter_rows(path: Path) -> Iterator[Row | BadRow]:
    """Rows from a .jsonl/.json or .csv file (by suffix; JSON Lines otherwise), in file order,
    read as a stream: a line (or a CSV cell) longer than LINE_MAX refuses the file with
    `BadFile`, so no input, `/dev/zero` included, is read whole into memory."""
    records = _csv_records(path) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    for line, record in records:
        try:
            yield _row(line, record)
        except ValueError as exc:
            yield BadRow(line, str(exc))


def _too_long(number: int) -> BadFile:
    return BadFile(
        f"line {number} is longer than {LINE_MAX // 1024} KiB; a batch file has "
        "one JSON object (or CSV row) per line"
    )


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        # The file's own lines: only "\n" ends one (U+2028 inside a string does not).
        for number, raw in enumerate(iter(lambda: handle.readline(LINE_MAX + 1), b""), 1):
            if len(raw) > LINE_MAX:
                raise _too_long(number)
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield number, ValueError("not UTF-8 text")
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            yield number, _json_row(line)


def _json_row(line: str) -> Any:
    try:
        found = json.loads(line)
    except json.JSONDecodeError as exc:
        return ValueError(f"not a JSON object ({exc.msg})")
    except RecursionError:
        return ValueError(f"JSON nested more than {NESTING_MAX} deep")
    if _depth(found) > NESTING_MAX:
        return ValueError(f"JSON nested more than {NESTING_MAX} deep")
    return found


def _depth(value: Any) -> int:
    """How deeply lists and objects nest (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _csv_records(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(_bounded_lines(handle))
        while True:
            first = reader.line_num + 1  # a row is named by the line it starts on
            # A cell of at most LINE_MAX characters, for this read only (the limit is global).
            before = csv.field_size_limit(LINE_MAX)
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # past it the reader cannot find the next row again
                raise BadFile(f"line {reader.line_num}: {exc}; fix the CSV file") from exc
            finally:
                csv.field_size_limit(before)
            line, found = _csv_row(max(first, 2), record)
            if found is not None:
                yield line, found


def _bounded_lines(handle: Any) -> Iterator[str]:
    """The file's lines, each read with a limit: a line longer than LINE_MAX (a file with no
    line ends at all, /dev/zero) refuses the file instead of filling memory."""
    for number, line in enumerate(iter(lambda: handle.readline(LINE_MAX + 1), ""), 1):
        if len(line) > LINE_MAX:
            raise _too_long(number)
        yield line


def _csv_row(line: int, record: dict[str | Any, Any]) -> tuple[int, Any]:
    if None in record:  # more cells than header fields
        return line, ValueError("more cells than the header has columns")
    cleaned = {k.strip(): v.strip() for k, v in record.items() if k and v and v.strip()}
    if "images" in cleaned:  # several sources in one cell, separated by |
        cleaned["images"] = [s.strip() for s in cleaned["images"].split("|") if s.strip()]
    return line, (cleaned or None)


def _row(line: int, record: Any) -> Row:
    if isinstance(record, ValueError):
        raise record
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; use {', '.join(FIELDS)}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("needs a prompt")
    if _CONTROL.search(prompt):
        raise ValueError("the prompt holds control characters (a NUL?); remove them")
    text = {name: _text(record, name) for name in ("model", "aspect_ratio", "resolution")}
    images = record.get("images") or []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise ValueError("images must be a list of URLs or file paths")
    name = _text(record, "name")
    if name is not None and not _NAME.match(name):
        raise ValueError(
            f"name {name!r} must be a plain file name (letters, digits, . _ -), "
            "with no folder: it is saved in the output folder"
        )
    fmt = _text(record, "format")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    return Row(line, prompt, images=tuple(images), name=name, format=fmt, **text)


def _text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value.strip()
