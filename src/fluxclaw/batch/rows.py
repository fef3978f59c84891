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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxclaw import contract
from fluxclaw.files import FORMATS, ImageFormat

FIELDS = ("prompt", "model", "aspect_ratio", "resolution", "images", "name", "format")
# A name becomes a file name in the output folder: letters, digits, dot, dash, underscore.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


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


def read_rows(path: Path) -> tuple[list[Row], list[BadRow]]:
    """Rows from a .jsonl/.json or .csv file (by suffix; JSON Lines otherwise), read as a
    stream: a line (or a CSV cell) longer than LINE_MAX refuses the file with `BadFile`, so no
    input, `/dev/zero` included, is read whole into memory."""
    if path.suffix.lower() == ".csv":
        return _split(_csv_records(path))
    return _split(_jsonl_records(path))


def _jsonl_records(path: Path) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    with path.open("rb") as handle:
        # The file's own lines: only "\n" ends one (U+2028 inside a string does not).
        for number, raw in enumerate(iter(lambda: handle.readline(LINE_MAX + 1), b""), 1):
            if len(raw) > LINE_MAX:
                raise BadFile(
                    f"line {number} is longer than {LINE_MAX // 1024} KiB; a batch file has "
                    "one JSON object (or CSV row) per line"
                )
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                records.append((number, ValueError("not UTF-8 text")))
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            records.append((number, _json_row(line)))
    return records


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


def _csv_records(path: Path) -> list[tuple[int, Any]]:
    before = csv.field_size_limit(LINE_MAX)  # a cell of at most LINE_MAX characters, here only
    try:
        return _csv_rows(path)
    finally:
        csv.field_size_limit(before)


def _csv_rows(path: Path) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = _bounded_lines(handle)
        reader = csv.DictReader(lines)
        while True:
            first = reader.line_num + 1  # a row is named by the line it starts on
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise BadFile(f"line {reader.line_num}: {exc}; fix the CSV file") from exc
            records.append(_csv_row(max(first, 2), record))
    return [item for item in records if item[1] is not None]


def _bounded_lines(handle: Any) -> Any:
    """The file's lines, each read with a limit: a line longer than LINE_MAX (a file with no
    line ends at all, /dev/zero) refuses the file instead of filling memory."""
    for number, line in enumerate(iter(lambda: handle.readline(LINE_MAX + 1), ""), 1):
        if len(line) > LINE_MAX:
            raise BadFile(
                f"line {number} is longer than {LINE_MAX // 1024} KiB; a batch file has "
                "one JSON object (or CSV row) per line"
            )
        yield line


def _csv_row(line: int, record: dict[str | Any, Any]) -> tuple[int, Any]:
    if None in record:  # more cells than header fields
        return line, ValueError("more cells than the header has columns")
    cleaned = {k.strip(): v.strip() for k, v in record.items() if k and v and v.strip()}
    if "images" in cleaned:  # several sources in one cell, separated by |
        cleaned["images"] = [s.strip() for s in cleaned["images"].split("|") if s.strip()]
    return line, (cleaned or None)


def _split(records: list[tuple[int, Any]]) -> tuple[list[Row], list[BadRow]]:
    rows: list[Row] = []
    bad: list[BadRow] = []
    for line, record in records:
        try:
            rows.append(_row(line, record))
        except ValueError as exc:
            bad.append(BadRow(line, str(exc)))
    return rows, bad


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
    if any(ord(c) < 32 and c not in "\t\n" for c in prompt):
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
