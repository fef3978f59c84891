"""Reading a batch file (JSON Lines or CSV): one image request per row, each with its line.

Only the shape is checked here (fields, types, a safe name); whether a request is one RunAPI
accepts is the library's own validation (`Client.draft`), run on every row before anything is
sent. A row that fails either is reported with its line number and skipped; the rest run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def read_rows(path: Path) -> tuple[list[Row], list[BadRow]]:
    """Rows from a .jsonl/.json or .csv file (by suffix; JSON Lines otherwise)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return _split(_csv_records(text))
    return _split(_jsonl_records(text))


def _jsonl_records(text: str) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            records.append((number, ValueError(f"not a JSON object ({exc.msg})")))
    return records


def _csv_records(text: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    records: list[tuple[int, Any]] = []
    for record in reader:
        line = reader.line_num
        if None in record:  # more cells than header fields
            records.append((line, ValueError("more cells than the header has columns")))
            continue
        cleaned = {k.strip(): v.strip() for k, v in record.items() if k and v and v.strip()}
        if "images" in cleaned:  # several sources in one cell, separated by |
            cleaned["images"] = [s.strip() for s in cleaned["images"].split("|") if s.strip()]
        if cleaned:
            records.append((line, cleaned))
    return records


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
