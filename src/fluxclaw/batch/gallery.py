"""`index.html`: a gallery that opens from disk, a thumbnail per image with its prompt, model,
ratio and cost, and every failure shown as one. Built from a batch's manifest or the history."""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from fluxclaw import saving

THUMB_PX = 320
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#f6f6f4;color:#222}
h1{font-size:20px;margin:0 0 4px}p.sum{margin:0 0 20px;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;overflow:hidden}
.card img{display:block;width:100%;height:240px;object-fit:contain;background:#eee}
.card .meta{padding:8px 10px}.prompt{margin:0 0 6px}.tags{color:#666;font-size:12px}
.card.failed{border:2px solid #c33}.card.failed .err{color:#c33;padding:8px 10px;margin:0}
.card.waiting{opacity:.6}
"""


def thumbnail(out: Path, image: Path) -> Path | None:
    """A small JPEG of `image` in `out/.fluxclaw/thumbs` (made once); None if it is unreadable."""
    from PIL import Image

    thumbs = out / ".fluxclaw" / "thumbs"
    # Keyed by the whole path: a history gallery holds many folders' `00002-...png`.
    where = hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:12]
    target = thumbs / f"{image.name}-{where}.jpg"
    if target.is_file() and target.stat().st_mtime >= image.stat().st_mtime:
        return target
    thumbs.mkdir(parents=True, exist_ok=True)
    try:
        saving.check_image(image.read_bytes())  # the pixel cap, before decoding
        with Image.open(image) as opened:
            opened.draft("RGB", (THUMB_PX, THUMB_PX))
            opened.thumbnail((THUMB_PX, THUMB_PX))
            rgb = opened.convert("RGB")
            data = BytesIO()
            rgb.save(data, "JPEG", quality=82)
    except Exception:
        return None
    saving.atomic_write(target, data.getvalue())
    return target


def write_gallery(out: Path, rows: Iterable[Mapping[str, Any]], title: str = "") -> Path:
    """index.html in `out`, with links relative to it (so the folder can move). Cards are
    written as they are made (a batch may have 100,000 rows), then put under the summary."""
    with tempfile.TemporaryFile() as cards:
        done, failed, spent = _cards(out, rows, cards)
        heading = html.escape(title or f"fluxclaw: {out.name}")
        index = out / "index.html"
        with saving.atomic_writer(index) as page:
            page.write(
                f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{heading}</title>'
                f"<style>{_STYLE}</style><h1>{heading}</h1>"
                f'<p class="sum">{done} images, {failed} failed, ${spent:.2f} spent</p>'
                '<div class="grid">'.encode()
            )
            cards.seek(0)
            shutil.copyfileobj(cards, page)
            page.write(b"</div></html>\n")
    return index


def _cards(
    out: Path, rows: Iterable[Mapping[str, Any]], cards: IO[bytes]
) -> tuple[int, int, float]:
    done = failed = 0
    spent = 0.0
    for row in rows:
        status = str(row.get("status"))
        path = Path(str(row["path"])) if row.get("path") else None
        tags = " · ".join(
            html.escape(str(v))
            for v in (row.get("model"), row.get("aspect_ratio"), row.get("resolution"))
            if v
        )
        cost = row.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0:
            spent += float(cost)
            tags += f" · ${float(cost):.2f}"
        prompt = html.escape(str(row.get("prompt") or ""))
        if status in ("done", "completed") and path is not None and path.is_file():
            done += 1
            thumb = thumbnail(out, path) or path
            _card(
                cards,
                f'<div class="card"><a href="{_rel(out, path)}">'
                f'<img src="{_rel(out, thumb)}" alt="{prompt}" loading="lazy"></a>'
                f'<div class="meta"><p class="prompt">{prompt}</p>'
                f'<div class="tags">{tags}</div></div></div>',
            )
        elif status in ("failed", "error", "invalid", "over_budget", "rejected"):
            failed += 1
            error = html.escape(str(row.get("error") or status))
            where = f"line {html.escape(str(row['line']))}: " if row.get("line") else ""
            _card(
                cards,
                f'<div class="card failed"><p class="err">{status}: {where}{error}</p>'
                f'<div class="meta"><p class="prompt">{prompt}</p>'
                f'<div class="tags">{tags}</div></div></div>',
            )
        else:
            _card(
                cards,
                f'<div class="card waiting"><div class="meta"><p class="prompt">{prompt}</p>'
                f'<div class="tags">{html.escape(status)} {tags}</div></div></div>',
            )
    return done, failed, spent


def _card(cards: IO[bytes], text: str) -> None:
    cards.write(text.encode())


def _rel(out: Path, path: Path) -> str:
    return html.escape(Path(os.path.relpath(path, out)).as_posix(), quote=True)
