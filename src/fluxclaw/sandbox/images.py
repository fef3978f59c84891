"""The sandbox's pictures: real PNGs at the contract's sizes that show what was asked for.

A client developer looking at a sandbox image should see which prompt (and, for a remix, which
sources) produced it, and the same prompt must give the same bytes, so colours and shapes come
from a hash of the prompt. Rendering is cheap C work in Pillow with a low PNG compression level,
and an LRU cache means a repeated prompt and size is rendered once.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps

from fluxclaw import contract

MARK: Final = "fluxclaw sandbox"
CACHE_BYTES: Final = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Source:
    """A remix source: its bytes when the sandbox issued it, else only the URL (never fetched)."""

    url: str
    data: bytes | None = None

    @property
    def key(self) -> str:
        if self.data is None:
            return "url:" + self.url
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _palette(prompt: str) -> tuple[tuple[int, int, int], tuple[int, int, int], bytes]:
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    hue = digest[0] / 255
    first = colorsys.hsv_to_rgb(hue, 0.55 + digest[1] / 255 * 0.35, 0.55 + digest[2] / 255 * 0.3)
    second = colorsys.hsv_to_rgb((hue + 0.35 + digest[3] / 255 * 0.3) % 1.0, 0.6, 0.35)
    return _rgb(first), _rgb(second), digest


def _rgb(values: tuple[float, float, float]) -> tuple[int, int, int]:
    return (round(values[0] * 255), round(values[1] * 255), round(values[2] * 255))


def _open(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (2048, 2048))
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def source_ratio(data: bytes) -> str | None:
    """The allowed aspect ratio nearest to an image's own, for a remix with `auto`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if width <= 0 or height <= 0:
        return None
    own = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(math.log(w / h) - own)

    return min(contract.ASPECT_RATIOS, key=distance)


def render(prompt: str, size: tuple[int, int], sources: Sequence[Source] = ()) -> bytes:
    """A PNG of `size` showing the prompt; a remix is drawn over its (tinted) first source."""
    width, height = size
    first, second, digest = _palette(prompt)
    base = None
    for source in sources:
        if source.data is not None:
            base = _open(source.data)
            if base is not None:
                break
    if base is not None:
        cover = ImageOps.fit(base, size, Image.Resampling.BILINEAR)
        image = Image.blend(cover, Image.new("RGB", size, first), 0.35)
    else:
        mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
        image = Image.composite(Image.new("RGB", size, second), Image.new("RGB", size, first), mask)
    draw = ImageDraw.Draw(image)
    if base is None:
        _shapes(draw, size, digest)
    unit = max(12, min(width, height) // 28)
    if sources:
        _thumbnails(image, draw, sources, unit)
    _caption(draw, prompt, size, unit, remix=bool(sources))
    mark_font = _font(max(10, unit * 2 // 3))
    draw.text(
        (width - unit, height - unit),
        MARK,
        font=mark_font,
        fill=(255, 255, 255),
        anchor="rs",
        stroke_width=max(1, unit // 16),
        stroke_fill=(0, 0, 0),
    )
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _shapes(draw: ImageDraw.ImageDraw, size: tuple[int, int], digest: bytes) -> None:
    width, height = size
    for i in range(5):
        b = digest[4 + i * 5 : 9 + i * 5]
        radius = (0.08 + b[0] / 255 * 0.2) * min(width, height)
        x, y = b[1] / 255 * width, b[2] / 255 * height
        colour = _rgb(colorsys.hsv_to_rgb(b[3] / 255, 0.45, 0.55 + b[4] / 255 * 0.4))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _thumbnails(
    image: Image.Image, draw: ImageDraw.ImageDraw, sources: Sequence[Source], unit: int
) -> None:
    width, height = image.size
    side = max(32, height // 6)
    label = _font(max(10, unit // 2))
    for i, source in enumerate(sources):
        left = unit + i * (side + unit // 2)
        top = height - unit * 3 - side
        if left + side > width - unit:
            break
        tile = _open(source.data) if source.data is not None else None
        box = (left - 3, top - 3, left + side + 3, top + side + 3)
        draw.rectangle(box, fill=(255, 255, 255))
        if tile is not None:
            image.paste(ImageOps.fit(tile, (side, side), Image.Resampling.BILINEAR), (left, top))
        else:
            draw.rectangle((left, top, left + side, top + side), fill=(90, 90, 90))
            text = "\n".join(textwrap.wrap(source.url, max(8, side // max(6, unit // 3)))[:6])
            draw.multiline_text((left + 4, top + 4), text, font=label, fill=(255, 255, 255))


def _caption(
    draw: ImageDraw.ImageDraw, prompt: str, size: tuple[int, int], unit: int, *, remix: bool
) -> None:
    width, _ = size
    font_size = unit * 3 // 2
    font = _font(font_size)
    columns = max(10, int(width / (font_size * 0.55)) - 4)
    lines = textwrap.wrap(prompt, columns)
    if len(lines) > 8:
        lines = [*lines[:7], lines[7][: columns - 1] + "…"]
    if remix:
        lines.insert(0, "remix:")
    draw.multiline_text(
        (unit, unit),
        "\n".join(lines),
        font=font,
        fill=(255, 255, 255),
        spacing=font_size // 3,
        stroke_width=max(1, font_size // 14),
        stroke_fill=(0, 0, 0),
    )


class ImageCache:
    """LRU of rendered PNGs by prompt, size and sources, bounded by bytes; safe across threads."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._items: OrderedDict[tuple[str, int, int, tuple[str, ...]], bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, prompt: str, size: tuple[int, int], sources: Sequence[Source] = ()) -> bytes:
        key = (prompt, size[0], size[1], tuple(s.key for s in sources))
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        data = render(prompt, size, sources)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return data
