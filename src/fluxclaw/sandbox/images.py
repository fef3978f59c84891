"""The sandbox's pictures: real images at the contract's sizes that show what was asked for.

A client developer looking at a sandbox image should see which prompt (and, for a remix, which
sources) produced it, and the same prompt must give the same bytes, so colours and shapes come
from a hash of the prompt. Rendering is cheap C work in Pillow with a low PNG compression level,
and an LRU cache means a repeated prompt and size is rendered once.

BFL's real output may be PNG, JPEG or WebP and carries signed C2PA Content Credentials, so a
task's image can be any of the three and, on request, signed the same way by a test CA the
sandbox makes itself (`Signer`); the prompt directives `[sandbox:format=jpeg]` and
`[sandbox:c2pa]` (or `[sandbox:c2pa=off]`) choose per task over the server's defaults.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import re
import tempfile
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps

from fluxclaw import contract, credentials

MARK: Final = "fluxclaw sandbox"
CACHE_BYTES: Final = 256 * 1024 * 1024
FORMATS: Final[dict[str, str]] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS: Final[dict[str, str]] = {"png": "png", "jpeg": "jpg", "webp": "webp"}
SIGNER_NAME: Final = "fluxclaw sandbox test CA"  # the O of the signer, where BFL's says BFL
CLAIM_GENERATOR: Final = "fluxclaw sandbox"
_FORMAT_TAG: Final = re.compile(r"\[sandbox:format=(png|jpe?g|webp)\]", re.IGNORECASE)
_C2PA_TAG: Final = re.compile(r"\[sandbox:c2pa(?:=(on|off))?\]", re.IGNORECASE)


def image_format(value: str) -> str:
    """`png`, `jpeg` (or `jpg`) or `webp`, normalised; ValueError names the choices."""
    name = value.lower().removeprefix("image/")
    name = "jpeg" if name == "jpg" else name
    if name not in FORMATS:
        raise ValueError(f"image_format={value!r} must be one of png, jpeg, webp.")
    return name


def directives(prompt: str, fmt: str, c2pa: bool) -> tuple[str, bool]:
    """A prompt's image format and signing: its `[sandbox:format=X]` and `[sandbox:c2pa]`
    (`=off` to opt out) where present, else the server's `fmt` and `c2pa`."""
    match = _FORMAT_TAG.search(prompt)
    if match is not None:
        fmt = image_format(match.group(1))
    sign = _C2PA_TAG.search(prompt)
    if sign is not None:
        c2pa = (sign.group(1) or "on").lower() == "on"
    return fmt, c2pa


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


def render(
    prompt: str, size: tuple[int, int], sources: Sequence[Source] = (), fmt: str = "png"
) -> bytes:
    """An image of `size` in `fmt` showing the prompt; a remix is drawn over its (tinted) first
    source."""
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
    return encode(image, fmt)


def encode(image: Image.Image, fmt: str) -> bytes:
    """The fastest encodings that still look right: PNG level 1, JPEG q90, WebP method 0."""
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=90)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=85, method=0)
    else:
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


class Signer:
    """The sandbox's stand-in for BFL's signing: C2PA creation manifests (AI-made) signed by a
    test CA made on first use in a temporary folder, whose root is the trust anchor to verify
    against (`ca_pem`, served at /_sandbox/c2pa/ca.pem). Needs the c2pa extra."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._ca: credentials.TestCA | None = None
        self._chain = self._key = self._root = b""
        self.generation = 0  # counts the CAs made, so that the cache never mixes two

    def ca(self) -> credentials.TestCA:
        """The test CA, made now if not yet (raises CredentialsUnavailableError without c2pa)."""
        with self._lock:
            if self._ca is None:
                credentials.require("signed sandbox images (c2pa)")
                self._folder = tempfile.TemporaryDirectory(prefix="fluxclaw-sandbox-ca-")
                ca = credentials.make_test_ca(Path(self._folder.name), SIGNER_NAME)
                self._chain, self._key = ca.cert_chain.read_bytes(), ca.key.read_bytes()
                self._root, self._ca = ca.ca_cert.read_bytes(), ca
                self.generation += 1
            return self._ca

    @property
    def ca_pem(self) -> bytes:
        self.ca()
        return self._root

    def sign(self, data: bytes, fmt: str, model: str) -> bytes:
        self.ca()
        return credentials.sign(
            data,
            fmt,
            cert_chain=self._chain,
            key=self._key,
            assertions={credentials.GENERATION_LABEL: {"model": model, "sandbox": True}},
            title=f"0.{EXTENSIONS[fmt]}",
            claim_generator=CLAIM_GENERATOR,
        )

    def close(self) -> None:
        """Delete the CA's files; a later `ca()` makes a new CA."""
        with self._lock:
            if self._folder is not None:
                self._folder.cleanup()
            self._folder = self._ca = None


class ImageCache:
    """LRU of rendered (and signed) images by prompt, size, sources, format and signing model,
    bounded by bytes; safe across threads."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(
        self,
        prompt: str,
        size: tuple[int, int],
        sources: Sequence[Source] = (),
        fmt: str = "png",
        *,
        signer: Signer | None = None,
        model: str = "",
    ) -> bytes:
        """The image, rendered once; with `signer`, carrying a manifest that names `model`."""
        signed = None
        if signer is not None:
            signer.ca()
            signed = (model, signer.generation)
        key = (prompt, size[0], size[1], tuple(s.key for s in sources), fmt, signed)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        data = render(prompt, size, sources, fmt)
        if signer is not None:
            data = signer.sign(data, fmt, model)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return data
