"""Round 2, pages: every field a gallery writes into HTML is escaped, whoever wrote the manifest
(the CLI's `fluxclaw gallery DIR`, and the library's `write_gallery`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from fluxclaw.batch import write_gallery
from tests.reliability.round2 import cli, env_for

EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _hostile_manifest(folder: Path) -> list[dict[str, object]]:
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    rows: list[dict[str, object]] = [
        {"line": EVIL, "status": "invalid", "error": EVIL},
        {"line": 2, "status": "failed", "error": EVIL, "prompt": EVIL, "model": EVIL},
        {"line": 3, "status": EVIL, "prompt": EVIL, "aspect_ratio": EVIL, "resolution": EVIL},
        {"line": 4, "status": "done", "path": str(folder / "ok.png"), "prompt": EVIL},
        {"line": 5, "status": "done", "cost_usd": EVIL, "prompt": "a cost that is no number"},
    ]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (folder / "manifest.jsonl").write_text(text)
    return rows


def _no_markup_from(page: str) -> None:
    assert "<script" not in page and "onerror=" not in page.replace("onerror=alert", "")
    assert "&lt;script&gt;" in page  # it is there, as text


@pytest.mark.round2("pages")
def test_a_hostile_manifest_is_shown_as_text_by_the_cli(tmp_path: Path) -> None:
    """Every manifest field (line, status, error, prompt, tags, cost) is escaped (CLI gallery)"""
    folder = tmp_path / "work" / "out"
    _hostile_manifest(folder)
    done = cli(tmp_path, env_for(tmp_path, "http://127.0.0.1:9"), "gallery", "out")
    assert done.returncode == 0, done.stderr
    _no_markup_from((folder / "index.html").read_text())


@pytest.mark.round2("pages")
def test_a_hostile_manifest_is_shown_as_text_by_the_library(tmp_path: Path) -> None:
    """Every field given to write_gallery is escaped (library)"""
    folder = tmp_path / "out"
    rows = _hostile_manifest(folder)
    _no_markup_from(write_gallery(folder, rows, title=EVIL).read_text())


@pytest.mark.round2("pages")
def test_a_manifest_line_that_is_not_json_is_one_clear_error(tmp_path: Path) -> None:
    """A manifest line that is not JSON is one error naming the file and line (CLI gallery)"""
    folder = tmp_path / "work" / "out"
    folder.mkdir(parents=True)
    (folder / "manifest.jsonl").write_text('{"line": 1, "status": "done"}\nnot json\n')
    done = cli(tmp_path, env_for(tmp_path, "http://127.0.0.1:9"), "gallery", "out")
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert "manifest.jsonl line 2 is not JSON" in done.stderr
