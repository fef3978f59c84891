"""Writing images: sniffing, conversion, provenance metadata, sidecars and atomic writes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from fluxclaw import errors
from fluxclaw.files import read_source, sniff
from fluxclaw.saving import check_target, store

META = {
    "task_id": "t-1",
    "model": "flux-2-pro-text-to-image",
    "prompt": "a fox ünïcode",
    "cost_usd": 0.05,
}


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 16)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGBA" if fmt == "PNG" else "RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_sniff(fmt: str, name: str) -> None:
    assert sniff(image_bytes(fmt)) == name
    assert sniff(b"<html>") is None


def test_png_keeps_its_pixels_and_gains_provenance(tmp_path: Path) -> None:
    data = image_bytes("PNG")
    saved = store(data, tmp_path / "out", metadata=META, url="http://img/x.png?sig=1")
    assert saved.path == tmp_path / "out.png"
    with PILImage.open(saved.path) as image:
        assert json.loads(image.info["fluxclaw"])["prompt"] == "a fox ünïcode"
        assert image.info["Description"] == "a fox ünïcode"
        with PILImage.open(io.BytesIO(data)) as original:
            assert image.tobytes() == original.tobytes()
    assert saved.sidecar is not None
    sidecar = json.loads(saved.sidecar.read_text())
    assert sidecar["task_id"] == "t-1" and sidecar["cost_usd"] == 0.05
    assert (sidecar["width"], sidecar["height"], sidecar["format"]) == (32, 16, "png")


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_conversion_with_metadata(tmp_path: Path, fmt: str) -> None:
    source = image_bytes("WEBP" if fmt == "png" else "PNG")
    saved = store(source, tmp_path / "img", fmt=fmt, quality=80, metadata=META)  # type: ignore[arg-type]
    assert sniff(saved.path.read_bytes()) == fmt
    with PILImage.open(saved.path) as image:
        text = image.info["fluxclaw"] if fmt == "png" else image.getexif()[0x010E]
        assert json.loads(text)["task_id"] == "t-1"


def test_jpeg_as_served_gets_a_comment(tmp_path: Path) -> None:
    saved = store(image_bytes("JPEG"), tmp_path / "a.jpg", metadata=META)
    with PILImage.open(saved.path) as image:
        assert json.loads(image.info["comment"])["model"] == META["model"]


def test_not_an_image_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(errors.DownloadError):
        store(b"<html>oops</html>", tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def target_paths(dest: Path, count: int, stem: str, fmt: Any) -> list[tuple[Path, Any]]:
    return check_target(dest, fmt, overwrite=True).paths(count, stem)


def test_target_paths(tmp_path: Path) -> None:
    assert target_paths(tmp_path, 1, "t", None) == [(tmp_path / "t", None)]
    assert target_paths(tmp_path, 2, "t", "jpeg") == [
        (tmp_path / "t-1", "jpeg"),
        (tmp_path / "t-2", "jpeg"),
    ]
    assert target_paths(tmp_path / "cat.webp", 1, "t", None) == [(tmp_path / "cat.webp", "webp")]
    assert target_paths(tmp_path / "cat.jpg", 2, "t", "jpeg")[1] == (tmp_path / "cat-2.jpg", "jpeg")
    with pytest.raises(errors.ValidationError, match="names a png file but --format is jpeg"):
        target_paths(tmp_path / "cat.png", 1, "t", "jpeg")
    assert target_paths(tmp_path / "newdir", 1, "t", None) == [(tmp_path / "newdir" / "t", None)]


def test_local_sources_are_checked_before_upload(tmp_path: Path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(image_bytes())
    assert read_source(path, 0)[1] == "in.png"
    assert read_source(image_bytes("JPEG"), 1)[1] == "image-2.jpg"
    with pytest.raises(errors.ValidationError, match=r"images\[0\]"):
        read_source(tmp_path / "missing.png", 0)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.ValidationError, match="not a PNG, JPEG or WebP"):
        read_source(tmp_path / "notes.txt", 0)
