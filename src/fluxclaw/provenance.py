"""Provenance in image bytes: find C2PA Content Credentials, label unsigned images AI-made.

Flux 2 images from Black Forest Labs carry a C2PA manifest (PNG `caBX` chunk, JPEG APP11 JUMBF,
WebP `C2PA` chunk) whose hard binding hashes every byte outside it, so a signed file is never
touched. A file without one is labelled by inserting an XMP packet (IPTC DigitalSourceType
trainedAlgorithmicMedia, the model, the tool) beside the pixels: nothing is re-encoded.

Downloaded bytes are untrusted, so containers are walked structurally with bounds checks (never
a substring search) and a broken one raises ValueError. Standard library only, and nothing
heavy at import: the CLI imports this on its hot path.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple

from fluxclaw import contract

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

Format = Literal["png", "jpeg", "webp"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
JPEG_XMP_HEADER = contract.XMP_NS.encode() + b"\x00"
JPEG_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
# One APP1 segment holds 65533 payload bytes; Adobe caps the packet below that (XMP spec part 3).
JPEG_XMP_MAX = 65501
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
# A label is a few hundred bytes; a bigger packet (or a zlib bomb in a PNG iTXt) is not read.
MAX_READ_PACKET = 4 * 1024 * 1024
# Chunks or segments walked in one file. An encoder's image has tens (a PNG's 8 KiB IDAT
# chunks: a few thousand); millions of empty ones are a file built to exhaust memory.
MAX_PARTS = 65_536

_APP0, _APP1, _APP11, _SOS = 0xE0, 0xE1, 0xEB, 0xDA
# Markers with no length field: TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# WebP chunks that come before XMP in the canonical order; unknown chunks go after it.
_WEBP_BEFORE_XMP = frozenset(
    {b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L", b"EXIF"}
)
_VP8X_XMP, _VP8X_ALPHA = 0x04, 0x10
# Characters XML 1.0 cannot carry (a label with them would not parse), listed outright: the
# negated form of XML's Char range takes `re` ~5 ms to compile, a tenth of a cold process's work.
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"

_FIELDS = {
    f"{{{contract.IPTC_EXT_NS}}}DigitalSourceType": "digital_source_type",
    f"{{{contract.IPTC_EXT_NS}}}AISystemUsed": "ai_system",
    f"{{{contract.XMP_NS}}}CreatorTool": "creator_tool",
}


class _Part(NamedTuple):
    """A chunk or segment: its type, its span in the file, and its payload's span."""

    kind: bytes
    start: int
    end: int
    body: int
    body_end: int


class Found(NamedTuple):
    """What a file says about itself: a C2PA manifest (verify it with c2pa), and its XMP label."""

    c2pa: bool
    digital_source_type: str | None
    ai_system: str | None
    creator_tool: str | None
    format: str | None


def image_format(data: bytes) -> Format | None:
    """The container from its magic bytes; a name or a Content-Type is not evidence."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


# ---------------------------------------------------------------------------------------------
# Walking containers


def _png_chunks(data: bytes) -> Iterator[_Part]:
    """Chunks by their length fields, through IEND; bytes after IEND are not walked."""
    pos, size = len(PNG_SIGNATURE), len(data)
    for _ in range(MAX_PARTS):
        if pos + 12 > size:
            raise ValueError(f"PNG ends inside a chunk header at byte {pos}")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > size:
            raise ValueError(f"PNG chunk {kind!r} at byte {pos} runs past the end of the file")
        yield _Part(kind, pos, end, pos + 8, pos + 8 + length)
        if kind == b"IEND":
            return
        pos = end
    raise ValueError(f"PNG has more than {MAX_PARTS:,} chunks")


# PNG's allowed bit depths for each colour type (PNG spec, 11.2.2)
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a whole PNG: IHDR first and sane, every chunk's CRC right, IEND
    reached. What Pillow's PNG verify() checks, without importing Pillow (~30 ms of a cold
    process's CPU, bench/speed.py); raises ValueError saying what is wrong."""
    parts = _png_chunks(data)
    first = next(parts, None)
    if first is None or first.kind != b"IHDR" or first.body_end - first.body != 13:
        raise ValueError("PNG does not start with its IHDR chunk")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, first.body)
    if not (0 < width < 2**31 and 0 < height < 2**31) or depth not in _PNG_DEPTHS.get(colour, ()):
        raise ValueError(f"PNG header is not valid ({width}x{height}, type {colour}/{depth})")
    last = first.kind
    for part in (first, *parts):
        (crc,) = struct.unpack_from(">I", data, part.body_end)
        if zlib.crc32(data[part.start + 4 : part.body_end]) != crc:
            raise ValueError(f"PNG chunk {part.kind!r} at byte {part.start} has a bad CRC")
        last = part.kind
    if last != b"IEND":
        raise ValueError("PNG ends before its IEND chunk")
    return width, height


def _jpeg_segments(data: bytes) -> Iterator[_Part]:
    """Marker segments after SOI, through the first SOS (entropy-coded data follows it);
    `kind` is the marker byte."""
    pos, size = 2, len(data)
    for _ in range(MAX_PARTS):
        if pos >= size or data[pos] != 0xFF:
            raise ValueError(f"JPEG has no marker where one belongs (byte {pos})")
        start = pos
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            raise ValueError("JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            yield _Part(bytes([marker]), start, pos, pos, pos)
            continue
        if marker in (0x00, 0xD8, 0xD9):
            raise ValueError(f"JPEG marker 0x{marker:02X} before the first scan")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 > size or length < 2 or pos + length > size:
            raise ValueError(f"JPEG segment 0x{marker:02X} at byte {start} runs past the end")
        yield _Part(bytes([marker]), start, pos + length, pos + 2, pos + length)
        pos += length
        if marker == _SOS:
            return
    raise ValueError(f"JPEG has more than {MAX_PARTS:,} segments before its first scan")


def _riff_chunks(data: bytes) -> tuple[list[_Part], int]:
    """WebP chunks by their sizes (padded to even), and where the RIFF container ends."""
    if len(data) < 12:
        raise ValueError("WebP shorter than its RIFF header")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end < 12 or riff_end > len(data):
        raise ValueError(f"RIFF size says {riff_end} bytes; the file has {len(data)}")
    parts: list[_Part] = []
    pos = 12
    while pos < riff_end:
        if pos + 8 > riff_end:
            raise ValueError(f"WebP ends inside a chunk header at byte {pos}")
        kind = data[pos : pos + 4]
        body_end = pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
        if body_end > riff_end:
            raise ValueError(f"WebP chunk {kind!r} at byte {pos} runs past the RIFF end")
        end = min(body_end + (body_end - pos) % 2, riff_end)  # a last pad byte may be missing
        parts.append(_Part(kind, pos, end, pos + 8, body_end))
        if len(parts) > MAX_PARTS:
            raise ValueError(f"WebP has more than {MAX_PARTS:,} chunks")
        pos = end
    return parts, riff_end


def _is_c2pa_jumbf(payload: bytes) -> bool:
    """An APP11 payload that starts a C2PA manifest store: JPEG XT "JP", box instance (2 bytes),
    sequence number (4), then a `jumb` superbox whose `jumd` description has the C2PA UUID
    or the label "c2pa". Continuation segments carry no description; the first one does."""
    if len(payload) < 16 or payload[:2] != b"JP" or payload[12:16] != b"jumb":
        return False
    pos = 24 if int.from_bytes(payload[8:12], "big") == 1 else 16  # XLBox follows LBox == 1
    if payload[pos + 4 : pos + 8] != b"jumd":
        return False
    uuid, toggles = payload[pos + 8 : pos + 24], payload[pos + 24 : pos + 25]
    if uuid[:4] == b"c2pa":  # 63327061-0011-0010-8000-00AA00389B71
        return True
    if not toggles or not toggles[0] & 0x02:  # no label
        return False
    return payload[pos + 25 :].split(b"\x00", 1)[0] == b"c2pa"


def c2pa_present(data: bytes) -> bool:
    """Whether the bytes carry a C2PA manifest store; False for formats other than PNG, JPEG
    and WebP. A manifest met before a break still counts; otherwise a broken container
    raises ValueError."""
    fmt = image_format(data)
    if fmt == "png":
        return any(part.kind == b"caBX" for part in _png_chunks(data))
    if fmt == "jpeg":
        return any(
            part.kind[0] == _APP11 and _is_c2pa_jumbf(data[part.body : part.body_end])
            for part in _jpeg_segments(data)
        )
    if fmt == "webp":
        return any(part.kind == b"C2PA" for part in _riff_chunks(data)[0])
    return False


# ---------------------------------------------------------------------------------------------
# Writing the label


def _xml_text(value: str) -> str:
    """Text safe inside an element: XML-invalid characters dropped, markup escaped."""
    value = re.sub(_NOT_XML, "", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def xmp_packet(*, model: str, creator_tool: str, prompt: str | None = None) -> bytes:
    """The XMP label: IPTC trainedAlgorithmicMedia, the model, the tool, and the prompt only
    when given (a prompt can be private). Element form, so newlines in a prompt survive."""
    fields = [
        ("Iptc4xmpExt:DigitalSourceType", contract.DIGITAL_SOURCE_TYPE),
        ("Iptc4xmpExt:AISystemUsed", model),
    ]
    if prompt is not None:
        fields.append(("Iptc4xmpExt:AIPromptInformation", prompt))
    fields.append(("xmp:CreatorTool", creator_tool))
    properties = "".join(f"<{name}>{_xml_text(value)}</{name}>" for name, value in fields)
    return (
        f'<?xpacket begin="\ufeff" id="{PACKET_ID}"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{RDF_NS}">'
        f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{contract.IPTC_EXT_NS}"'
        f' xmlns:xmp="{contract.XMP_NS}">{properties}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def _jpeg_packet(model: str, creator_tool: str, prompt: str | None) -> bytes:
    """A packet that fits one APP1 segment: a long prompt is cut (marked "…"), never refused."""
    packet = xmp_packet(model=model, creator_tool=creator_tool, prompt=prompt)
    if len(packet) <= JPEG_XMP_MAX:
        return packet
    if prompt is None or len(xmp_packet(model=model, creator_tool=creator_tool, prompt="…")) > (
        JPEG_XMP_MAX
    ):
        raise ValueError("model and creator tool are too long for a JPEG XMP segment")
    low, high = 0, len(prompt)  # the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        cut = xmp_packet(model=model, creator_tool=creator_tool, prompt=prompt[:middle] + "…")
        if len(cut) <= JPEG_XMP_MAX:
            low = middle
        else:
            high = middle - 1
    return xmp_packet(model=model, creator_tool=creator_tool, prompt=prompt[:low] + "…")


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytearray:
    """`data` with each non-overlapping span [start, end) replaced by its bytes."""
    out, cursor = bytearray(), 0
    for start, end, new in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        out += data[cursor:start]
        out += new
        cursor = end
    out += data[cursor:]
    return out


def _png_is_xmp(data: bytes, part: _Part) -> bool:
    return part.kind == b"iTXt" and data.startswith(PNG_XMP_KEYWORD + b"\x00", part.body)


def _label_png(data: bytes, packet: bytes) -> bytes:
    """An uncompressed iTXt right after IHDR, where readers look first; an old packet goes."""
    chunks = list(_png_chunks(data))
    if chunks[0].kind != b"IHDR":
        raise ValueError("PNG does not start with IHDR")
    # keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translation NUL
    body = b"iTXt" + PNG_XMP_KEYWORD + b"\x00" * 5 + packet
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    edits = [(part.start, part.end, b"") for part in chunks if _png_is_xmp(data, part)]
    edits.append((chunks[0].end, chunks[0].end, chunk))
    return bytes(_splice(data, edits))


def _jpeg_is_xmp(data: bytes, part: _Part) -> bool:
    return part.kind[0] == _APP1 and data.startswith(
        (JPEG_XMP_HEADER, JPEG_XMP_EXTENSION), part.body
    )


def _label_jpeg(data: bytes, packet: bytes) -> bytes:
    """An APP1 XMP segment after SOI and any leading JFIF/Exif segments (readers expect those
    first); old XMP segments, extended parts included, go."""
    segments = list(_jpeg_segments(data))
    insert_at = 2
    for part in segments:
        jfif = part.kind[0] == _APP0 and data.startswith((b"JFIF\x00", b"JFXX\x00"), part.body)
        exif = part.kind[0] == _APP1 and data.startswith(b"Exif\x00", part.body)
        if not (jfif or exif):
            break
        insert_at = part.end
    payload = JPEG_XMP_HEADER + packet
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    edits = [(part.start, part.end, b"") for part in segments if _jpeg_is_xmp(data, part)]
    edits.append((insert_at, insert_at, segment))
    return bytes(_splice(data, edits))


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)


def _webp_canvas(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha from a simple WebP's bitstream header (VP8X must restate them)."""
    if kind == b"VP8 ":
        # frame tag (3 bytes, bit 0 clear on a key frame), start code, 14-bit width and height
        if len(body) < 10 or body[0] & 1 or body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("VP8 bitstream does not start with a key frame")
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
        if not width or not height:
            raise ValueError("VP8 frame has no size")
        return width, height, False
    # VP8L: signature 0x2F, then width-1 (14 bits), height-1 (14), alpha hint (1), version (3)
    if len(body) < 5 or body[0] != 0x2F:
        raise ValueError("VP8L bitstream has no signature")
    bits = int.from_bytes(body[1:5], "little")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)


def _label_webp(data: bytes, packet: bytes) -> bytes:
    """An `XMP ` chunk after the image and EXIF chunks; XMP needs the extended format, so a
    simple file gains a VP8X header restating its canvas, and an extended one its XMP flag."""
    chunks, riff_end = _riff_chunks(data)
    if not chunks:
        raise ValueError("WebP has no chunks")
    edits = [(part.start, part.end, b"") for part in chunks if part.kind == b"XMP "]
    first = chunks[0]
    if first.kind == b"VP8X":
        if first.body_end - first.body < 10:
            raise ValueError("VP8X chunk is too short")
        edits.append((first.body, first.body + 1, bytes([data[first.body] | _VP8X_XMP])))
    else:
        image = next((part for part in chunks if part.kind in (b"VP8 ", b"VP8L")), None)
        if image is None:
            raise ValueError("WebP has no VP8X, VP8 or VP8L chunk")
        width, height, alpha = _webp_canvas(image.kind, data[image.body : image.body_end])
        alpha = alpha or any(part.kind == b"ALPH" for part in chunks)
        flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        header = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
        edits.append(
            (
                first.start,
                first.start,
                _riff_chunk(b"VP8X", header + (height - 1).to_bytes(3, "little")),
            )
        )
    insert_at = max(part.end for part in chunks if part.kind in _WEBP_BEFORE_XMP)
    pad = b"\x00" * (insert_at % 2)  # a last chunk may lack its pad byte; chunks start even
    edits.append((insert_at, insert_at, pad + _riff_chunk(b"XMP ", packet)))
    out = _splice(data, edits)
    riff_size = riff_end - 8 + len(out) - len(data)  # bytes after the RIFF stay outside it
    if riff_size > 0xFFFFFFFF:
        raise ValueError("labelled WebP would exceed the RIFF size limit")
    out[4:8] = struct.pack("<I", riff_size)
    return bytes(out)


def label(data: bytes, *, model: str, creator_tool: str, prompt: str | None = None) -> bytes:
    """The same image (same encoded pixels) with an XMP AI label, replacing any XMP it had.

    Refuses (ValueError) a file with Content Credentials, whose hash any insertion would break,
    a format other than PNG, JPEG and WebP, and a broken container. The prompt goes in only
    when given; in a JPEG a prompt too long for one segment is cut.
    """
    fmt = image_format(data)
    if fmt is None:
        raise ValueError("not a PNG, JPEG or WebP image")
    if c2pa_present(data):
        raise ValueError("the image has C2PA Content Credentials; labelling would break them")
    if fmt == "jpeg":
        return _label_jpeg(data, _jpeg_packet(model, creator_tool, prompt))
    packet = xmp_packet(model=model, creator_tool=creator_tool, prompt=prompt)
    return _label_png(data, packet) if fmt == "png" else _label_webp(data, packet)


# ---------------------------------------------------------------------------------------------
# Reading it back


def _png_xmp(data: bytes) -> bytes | None:
    for part in _png_chunks(data):
        if not _png_is_xmp(data, part):
            continue
        body = data[part.body + len(PNG_XMP_KEYWORD) + 1 : part.body_end]
        if len(body) < 2:
            return None
        compressed, rest = body[0], body[2:]
        fields = rest.split(b"\x00", 2)  # language tag, translated keyword, text
        if len(fields) < 3:
            return None
        if not compressed:
            return fields[2]
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(fields[2], MAX_READ_PACKET + 1)
        except zlib.error:
            return None
        return text if len(text) <= MAX_READ_PACKET else None
    return None


def _find_packet(data: bytes, fmt: Format) -> bytes | None:
    """The XMP packet found where its format keeps it (the first one)."""
    if fmt == "png":
        return _png_xmp(data)
    if fmt == "jpeg":
        for part in _jpeg_segments(data):
            if part.kind[0] == _APP1 and data.startswith(JPEG_XMP_HEADER, part.body):
                return data[part.body + len(JPEG_XMP_HEADER) : part.body_end]
        return None
    for part in _riff_chunks(data)[0]:
        if part.kind == b"XMP ":
            return data[part.body : part.body_end]
    return None


def _read_fields(packet: bytes) -> dict[str, str]:
    """The label's fields, in attribute or element form under any prefix. UTF-8 only, and a
    packet declaring a DTD or entities is not read: nothing here expands entities."""
    if len(packet) > MAX_READ_PACKET:
        return {}
    try:
        text = packet.decode("utf-8").strip("\ufeff \t\r\n\x00")
    except UnicodeDecodeError:
        return {}
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return {}
    from xml.etree import ElementTree  # lazy: only reading labels needs an XML parser

    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return {}
    found: dict[str, str] = {}
    for description in root.iter(f"{{{RDF_NS}}}Description"):
        for name, value in description.attrib.items():
            if name in _FIELDS and value.strip():
                found.setdefault(_FIELDS[name], value.strip())
        for child in description:
            prop = _element_value(child) if child.tag in _FIELDS else None
            if prop:
                found.setdefault(_FIELDS[child.tag], prop)
    return found


def _element_value(element: Element) -> str | None:
    """A property's value: rdf:resource, the first rdf:li of an Alt/Seq/Bag, or the text."""
    resource = element.get(f"{{{RDF_NS}}}resource")
    if resource is not None:
        return resource.strip() or None
    item = element.find(f".//{{{RDF_NS}}}li")
    text = (item if item is not None else element).text
    return text.strip() if text and text.strip() else None


def inspect(data: bytes) -> Found:
    """What the bytes say: C2PA or not, and the XMP label's fields (None when absent). An
    unknown format gives an empty Found; a broken PNG, JPEG or WebP raises ValueError."""
    fmt = image_format(data)
    if fmt is None:
        return Found(
            c2pa=False, digital_source_type=None, ai_system=None, creator_tool=None, format=None
        )
    packet = _find_packet(data, fmt)
    fields = _read_fields(packet) if packet is not None else {}
    return Found(
        c2pa=c2pa_present(data),
        digital_source_type=fields.get("digital_source_type"),
        ai_system=fields.get("ai_system"),
        creator_tool=fields.get("creator_tool"),
        format=fmt,
    )
