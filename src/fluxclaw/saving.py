"""Where images go and how they are written: checked targets, names, atomic files.

Targets are checked before anything is paid for; files carry their own provenance.

Generated URLs expire (7 days), so a saved file carries the prompt, model, task id and cost in its
metadata and in a JSON sidecar next to it. Nothing here does network I/O.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypedDict

from fluxclaw import errors, provenance
from fluxclaw._version import __version__
from fluxclaw.deadline import Deadline
from fluxclaw.files import EXTENSIONS, FORMATS, SUFFIX, ImageFormat, short_url, sniff

if TYPE_CHECKING:
    from PIL.ImageFile import ImageFile as PILImageFile

    from fluxclaw import credentials


class SaveOptions(TypedDict, total=False):
    """format and quality (convert), sidecar (write <file>.json, default True), stem (the name
    in a folder; default the task id), overwrite (replace an existing file), target (a checked
    `Target`, instead of `dest`), timeout (seconds for all the downloads together),
    label_prompt (also put the prompt into the AI label's XMP, `AIPromptInformation`; off by
    default: a file may travel where its prompt should not)."""

    format: ImageFormat | None
    quality: int | None
    sidecar: bool
    stem: str | None
    overwrite: bool
    target: Target | None
    timeout: float | None
    deadline: Deadline | None
    label_prompt: bool


@dataclass(frozen=True, slots=True)
class SavedImage:
    path: Path
    sidecar: Path | None
    format: ImageFormat
    width: int
    height: int
    size_bytes: int
    sha256: str
    url: str


class Target(NamedTuple):
    """Where a job's images go: a folder (names made from a stem) or a file name the user gave.

    Checked by `check_target` before anything is paid for, and kept in the history so a resumed
    task saves exactly where the original run would have.
    """

    folder: Path
    name: str | None = None
    format: ImageFormat | None = None
    overwrite: bool = False

    def paths(self, count: int, stem: str) -> list[tuple[Path, ImageFormat | None]]:
        """`count` paths: <stem>[-i] in the folder (suffix added on save), or the file name,
        numbered when there are several."""
        out: list[tuple[Path, ImageFormat | None]] = []
        for index in range(count):
            number = f"-{index + 1}" if count > 1 else ""
            if self.name is None:
                out.append((self.folder / f"{stem}{number}", self.format))
            else:
                named = Path(self.name)
                chosen = self.format or EXTENSIONS[named.suffix.lower()]
                out.append((self.folder / f"{named.stem}{number}{SUFFIX[chosen]}", chosen))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "name": self.name,
            "format": self.format,
            "overwrite": self.overwrite,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        fmt = data.get("format")
        return cls(
            folder=Path(str(data["folder"])),
            name=data.get("name") or None,
            format=fmt if fmt in FORMATS else None,
            overwrite=bool(data.get("overwrite")),
        )


# A last suffix like these names a file; one that is not an image format fluxclaw writes is
# refused instead of silently becoming a folder (`-o pic.gif`). Longer or odd suffixes
# (`out.v2`, `shots.2026`) are folders.
_FILE_SUFFIX = re.compile(r"^\.[A-Za-z]{1,5}$")


def numbered(dest: str | None, index: int) -> str | None:
    """The `-o` of the index-th (from 1) of several jobs run at once: a file name `x.png` becomes
    `x-1.png`, `x-2.png`, ...; a folder (or none) is shared, each job naming its own files."""
    if dest is None or _names_a_folder(dest):
        return dest
    path = Path(dest)
    return str(path.with_name(f"{path.stem}-{index}{path.suffix}"))


def _names_a_folder(dest: str | os.PathLike[str]) -> bool:
    """How `-o` is read: an existing folder, a path ending in /, or no image-like suffix."""
    path = Path(os.path.abspath(Path(dest).expanduser()))
    return (
        path.is_dir()
        or os.fspath(dest).endswith(("/", os.sep))
        or not _FILE_SUFFIX.match(path.suffix)
    )


def check_target(
    dest: str | os.PathLike[str] | None, fmt: ImageFormat | None = None, *, overwrite: bool = False
) -> Target:
    """The output target, checked before any money is spent: a path under a file, a folder we
    cannot write or an unknown image suffix is a `ValidationError`, and so is an existing file
    named explicitly (unless `overwrite`). Creates nothing."""
    path = Path(os.path.abspath(Path(dest).expanduser())) if dest is not None else Path.cwd()
    text = os.fspath(dest) if dest is not None else ""
    folder_named = dest is None or _names_a_folder(dest)
    if not folder_named and path.suffix.lower() not in EXTENSIONS:
        raise _bad_output(
            f"-o {text} ends in {path.suffix}, which is not an image format fluxclaw saves; "
            "use .png, .jpg, .jpeg or .webp, or end the path with / for a folder."
        )
    named = EXTENSIONS.get(path.suffix.lower())
    if not folder_named and fmt is not None and named != fmt:
        raise _bad_output(
            f"-o {text} names a {named} file but --format is {fmt}; drop --format (the name's "
            f"suffix picks the format) or name it {path.stem}{SUFFIX[fmt]}."
        )
    folder = path if folder_named else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _bad_output(
            f"cannot save under {folder}: {existing} is a file, not a folder; choose another -o."
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise _bad_output(
            f"cannot write into {existing} ({exc.strerror or exc}); choose another -o."
        ) from exc
    target = Target(folder, None if folder_named else path.name, fmt, overwrite)
    if not folder_named and not overwrite:
        # Compared after the suffix the format gives it: `-o x.jpeg` is written as x.jpg.
        for taken in {path, target.paths(1, "")[0][0]}:
            if taken.exists():
                raise _bad_output(
                    f"{taken} already exists; pass --force to overwrite it, or choose another name."
                )
    return target


def _bad_output(message: str) -> errors.ValidationError:
    return errors.ValidationError(message, errors={"output": [message]})


def slug(prompt: str, words: int = 6) -> str:
    found = re.findall(r"[a-z0-9]+", prompt.lower())
    return "-".join(found[:words])[:48] or "image"


def stem_for(created_at: float, prompt: str, task_id: str) -> str:
    """<local time>-<prompt slug>-<task id prefix>: sorts by time, says what it is, and is the
    same whenever a task's images are saved (the time is the job's, not the save's)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(created_at))
    return f"{stamp}-{slug(prompt)}-{task_id[:8]}"


def store(
    data: bytes,
    path: Path,
    *,
    fmt: ImageFormat | None = None,
    quality: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    sidecar: bool = True,
    url: str = "",
    overwrite: bool = False,
    signer: credentials.Identity | None = None,
    label_prompt: bool = False,
) -> SavedImage:
    """Write one image atomically, converted if asked, with provenance inside and beside it.

    `path` gets the format's suffix if it has no image suffix yet. An existing file is never
    replaced unless `overwrite`: the same image is kept as it is, another gets a numbered name.
    """
    source = sniff(data)
    if source is None:
        raise errors.DownloadError(f"{short_url(url) or 'data'} is not a PNG, JPEG or WebP image")
    width, height = check_image(data, url)
    target = fmt or source
    if path.suffix.lower() not in EXTENSIONS:
        path = path.with_name(path.name + SUFFIX[target])
    meta = dict(metadata or {})
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    converting = target != source or quality is not None
    odd: str | None = None  # why the file's container could not be walked, if it could not
    try:
        credentials = provenance.c2pa_present(data)
    except ValueError as exc:  # decodable (check_image passed) but its container is odd
        credentials, odd = False, str(exc)
    output: bytes
    origin: dict[str, Any]
    if credentials and not converting:  # signed upstream: every byte is bound, so none changes
        output, origin = data, {"c2pa": "present", "kept": True}
    else:
        if converting:
            output = _convert(data, target, quality, meta, text)
        elif target == "png":
            output = _png_with_text(
                data, {"fluxclaw": text, "Description": str(meta.get("prompt", ""))}
            )
        elif target == "jpeg":
            output = _jpeg_with_comment(data, text)
        else:
            output = data  # WebP: the record goes to the sidecar, the label into the file
        try:
            output = provenance.label(
                output,
                model=str(meta.get("model") or "Flux 2"),
                creator_tool=CREATOR_TOOL,
                prompt=str(meta.get("prompt") or "") or None if label_prompt else None,
            )
        except ValueError as exc:
            odd = odd or str(exc)
        origin = {"c2pa": "absent", "label": "iptc"}
        if odd is not None:  # a paid image is saved whatever its container: unlabelled, said
            origin = {"c2pa": "unknown", "label": None, "note": odd}
            warnings.warn(
                f"{path.name}: saved without an AI label ({odd}).",
                errors.ProvenanceWarning,
                stacklevel=2,
            )
        if credentials:
            origin = {"c2pa": "present", "kept": False, "label": "iptc"}
            warnings.warn(
                f"{path.name}: converting to {target.upper()} drops the image's Content "
                "Credentials (C2PA); the file is labelled AI-made (IPTC) instead. Save it "
                "without --format to keep them.",
                errors.ProvenanceWarning,
                stacklevel=2,
            )
    if signer is not None:
        output = _signed(output, target, signer, meta, path, parent=data if credentials else None)
        origin["signed"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(output).hexdigest()
    received = hashlib.sha256(data).hexdigest()
    # A signature differs each time: a signed save knows its image by what was downloaded.
    known = received if signer is not None else None
    if not overwrite and path.exists():
        path = _free_name(path, digest, known)
    kept = _kept(path, digest, known)
    if kept is None:
        atomic_write(path, output)
    else:  # this image is there already: kept as it is
        output, digest = kept, hashlib.sha256(kept).hexdigest()
    side: Path | None = None
    if sidecar:
        side = path.with_name(path.name + ".json")
        record = {
            **meta,
            "file": path.name,
            "format": target,
            "width": width,
            "height": height,
            "size_bytes": len(output),
            "sha256": digest,
            "source_sha256": received,
            "provenance": origin,
            "source_url": url or None,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write(side, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
    return SavedImage(path, side, target, width, height, len(output), digest, url)


def _signed(
    data: bytes,
    fmt: ImageFormat,
    signer: credentials.Identity,
    meta: Mapping[str, Any],
    path: Path,
    *,
    parent: bytes | None,
) -> bytes:
    """The file signed with the user's certificate: an edit of the upstream image (its
    manifest the parent ingredient) when it had credentials, a creation otherwise."""
    from fluxclaw import credentials

    generation = {k: meta.get(k) for k in ("model", "task_id", "action") if meta.get(k)}
    try:
        return signer.sign(
            data,
            fmt,
            assertions={credentials.GENERATION_LABEL: generation},
            parent=parent,
            title=path.name,
            claim_generator="fluxclaw",
        )
    except Exception as exc:  # c2pa's own errors: a key that does not match, a bad chain
        raise errors.ValidationError(
            f"cannot sign {path.name} with {signer.cert_path} ({exc}); check --c2pa-cert and "
            "--c2pa-key (a PEM chain and its private key)."
        ) from exc


def _free_name(path: Path, digest: str, received: str | None) -> Path:
    """`path` if it already holds this very image, else the first free `<stem>-N<suffix>`."""
    if _kept(path, digest, received) is not None:
        return path
    for number in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        if not candidate.exists() or _kept(candidate, digest, received) is not None:
            return candidate
    raise errors.ValidationError(f"no free file name next to {path}")


def _kept(path: Path, digest: str, received: str | None) -> bytes | None:
    """The bytes at `path` if they are this image: the same bytes, or (a signed save) the file
    whose untouched sidecar says it was made from the same download."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found == digest:
        return data
    if received is None:
        return None
    try:
        record = json.loads(path.with_name(path.name + ".json").read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(record, dict) and record.get("source_sha256") == received
    return data if same and record.get("sha256") == found else None


CREATOR_TOOL = f"fluxclaw {__version__}"  # xmp:CreatorTool of the files fluxclaw labels

# Flux 2 makes about 4 MP (2k); a generous 4096 x 4096 is the most fluxclaw decodes, so a
# hostile or broken answer cannot make a conversion or thumbnail take more than ~70 MB.
MAX_PIXELS = 4096 * 4096


def open_image(data: bytes) -> PILImageFile:
    """Pillow's reader for the container the bytes start with, and that one only: Image.open on
    bytes first loads five format plugins, about 15 ms of a cold process's CPU (bench/speed.py).
    """
    kind = sniff(data)
    if kind == "png":
        from PIL.PngImagePlugin import PngImageFile

        return PngImageFile(io.BytesIO(data))
    if kind == "jpeg":
        from PIL.JpegImagePlugin import JpegImageFile

        return JpegImageFile(io.BytesIO(data))
    if kind == "webp":
        from PIL.WebPImagePlugin import WebPImageFile

        return WebPImageFile(io.BytesIO(data))
    from PIL import Image as PILImage

    with warnings.catch_warnings():  # MAX_PIXELS (check_image) is the check that counts
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        return PILImage.open(io.BytesIO(data))


def check_image(data: bytes, url: str = "") -> tuple[int, int]:
    """Width and height from the header, refused above MAX_PIXELS before any pixel is decoded;
    then the whole image checked (PNG chunk CRCs, or a JPEG/WebP decode by Pillow), so a
    truncated or corrupt download is an error instead of a broken file on disk."""
    name = short_url(url) or "image"
    try:
        if sniff(data) == "png":  # Flux 2's usual answer: checked without Pillow
            width, height = provenance.png_size(data)
            _within_pixels(name, width, height)
            return width, height
        with open_image(data) as image:
            width, height = image.size
            _within_pixels(name, width, height)
            image.load()
    except errors.DownloadError:
        raise
    except Exception as exc:  # Pillow raises many kinds for a broken or truncated file
        raise errors.DownloadError(
            f"{name} is not a whole, readable image ({type(exc).__name__}: {exc})"
        ) from exc
    return width, height


def _within_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise errors.DownloadError(
            f"{name} declares {width}x{height} pixels, more than the {MAX_PIXELS:,} "
            "fluxclaw accepts (Flux 2 makes about 4 million)"
        )


def atomic_write(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    with atomic_writer(path) as handle:
        handle.write(data)


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """`atomic_write` for a file written a piece at a time (a manifest of many rows)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _convert(
    data: bytes, target: ImageFormat, quality: int | None, meta: Mapping[str, Any], text: str
) -> bytes:
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    with open_image(data) as image:
        image.load()
        out = io.BytesIO()
        exif = PILImage.Exif()
        exif[0x010E] = text  # ImageDescription
        exif[0x0131] = "fluxclaw"  # Software
        if target == "png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("fluxclaw", text)
            info.add_itxt("Description", str(meta.get("prompt", "")))
            image.save(out, "PNG", pnginfo=info)
        elif target == "jpeg":
            rgb = image.convert("RGB") if image.mode not in ("RGB", "L") else image
            rgb.save(out, "JPEG", quality=quality or 90, exif=exif.tobytes(), comment=text.encode())
        else:
            image.save(out, "WEBP", quality=quality or 90, exif=exif.tobytes())
        return out.getvalue()


def _png_with_text(data: bytes, entries: Mapping[str, str]) -> bytes:
    """Add iTXt chunks right after IHDR, leaving the pixels' bytes untouched (no re-encode)."""
    ihdr_end = 8 + 8 + 13 + 4  # signature, length+type, IHDR data, CRC
    chunks = b""
    for key, value in entries.items():
        body = key.encode("latin-1") + b"\x00\x00\x00" + b"\x00" + b"\x00" + value.encode()
        chunks += struct.pack(">I", len(body)) + b"iTXt" + body
        chunks += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def _jpeg_with_comment(data: bytes, text: str) -> bytes:
    """Add a COM segment after the leading APPn segments (JFIF stays first; no re-encode);
    JPEG segments hold at most 65533 bytes."""
    body = text.encode()[:65533]
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and 0xE0 <= data[at + 1] <= 0xEF:
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    at = min(at, len(data))
    return data[:at] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[at:]
