"""Provenance in image bytes: C2PA detection, the XMP AI label, and reading it back.

Pillow is the independent reader: labelled files must decode to the same pixels and its
`getxmp()` must see the label. C2PA files are built by hand (and, when c2pa-python is there,
signed for real); hostile inputs may only ever raise ValueError.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image, ImageSequence, PngImagePlugin

from fluxclaw import contract
from fluxclaw.provenance import Found, c2pa_present, inspect, label, xmp_packet

MODEL = "flux-2-pro-text-to-image"
TOOL = "fluxclaw 1.2.3"
C2PA_UUID = bytes.fromhex("6332706100110010800000aa00389b71")


def noise(mode: str, size: tuple[int, int] = (37, 23), seed: int = 1) -> Image.Image:
    """Pixels that differ everywhere, so a changed decode cannot go unnoticed."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif() -> bytes:
    tags = Image.Exif()
    tags[0x0131] = "camera-ish"
    return tags.tobytes()


def animated() -> bytes:
    frames = [noise("RGB", (20, 12), seed) for seed in (1, 2)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=80)


SAMPLES: dict[str, Callable[[], bytes]] = {
    "png-rgba": lambda: encode(noise("RGBA"), "PNG"),
    "png-palette": lambda: encode(noise("RGB").convert("P"), "PNG"),
    "jpeg-jfif": lambda: encode(noise("RGB"), "JPEG", quality=85),
    "jpeg-exif": lambda: encode(noise("RGB"), "JPEG", exif=exif()),
    "webp-vp8": lambda: encode(noise("RGB"), "WEBP", quality=80),
    "webp-vp8l-alpha": lambda: encode(noise("RGBA"), "WEBP", lossless=True),
    "webp-vp8x-alpha": lambda: encode(noise("RGBA"), "WEBP", quality=80),
    "webp-vp8x-exif": lambda: encode(noise("RGB"), "WEBP", quality=80, exif=exif()),
    "webp-animated": animated,
}


def frames(data: bytes) -> list[tuple[str, tuple[int, int], bytes]]:
    with Image.open(io.BytesIO(data)) as image:
        return [(f.mode, f.size, f.tobytes()) for f in ImageSequence.Iterator(image)]


def pillow_xmp(data: bytes) -> dict[str, Any]:
    """The rdf:Description Pillow reads (defusedxml under `getxmp`)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "PNG":
            assert "XML:com.adobe.xmp" in image.info
        description: dict[str, Any] = image.getxmp()["xmpmeta"]["RDF"]["Description"]
        return description


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, CRCs checked: a reader independent of the module."""
    pos, out = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), kind
        out.append((kind, body))
        pos += 12 + length
    return out


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) % 2)


def jumbf(label: bytes = b"c2pa", uuid: bytes = C2PA_UUID, toggles: int = 0x03) -> bytes:
    """A JUMBF superbox as C2PA writes one: `jumb` holding a `jumd` description and content."""
    description = uuid + bytes([toggles]) + (label + b"\x00" if toggles & 0x02 else b"")
    jumd = struct.pack(">I", 8 + len(description)) + b"jumd" + description
    content = struct.pack(">I", 12) + b"json" + b"{}  "
    return struct.pack(">I", 8 + len(jumd) + len(content)) + b"jumb" + jumd + content


def with_c2pa(data: bytes, box: bytes) -> bytes:
    """`data` with a manifest store where its format keeps one."""
    if data.startswith(b"\x89PNG"):
        return data[:33] + png_chunk(b"caBX", box) + data[33:]
    if data.startswith(b"\xff\xd8"):
        payload = b"JP" + struct.pack(">HI", 1, 1) + box
        segment = b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload
        app0_end = 4 + int.from_bytes(data[4:6], "big")
        return data[:app0_end] + segment + data[app0_end:]
    body = data[12:] + riff_chunk(b"C2PA", box)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# ---------------------------------------------------------------------------------------------
# Labelling


@pytest.mark.parametrize("name", SAMPLES)
def test_label_keeps_pixels_and_pillow_reads_it(name: str) -> None:
    data = SAMPLES[name]()
    labelled = label(data, model=MODEL, creator_tool=TOOL)
    assert frames(labelled) == frames(data)
    description = pillow_xmp(labelled)
    assert description["DigitalSourceType"] == contract.DIGITAL_SOURCE_TYPE
    assert description["AISystemUsed"] == MODEL
    assert description["CreatorTool"] == TOOL
    assert "AIPromptInformation" not in description  # a prompt goes in only when asked
    fmt = name.split("-")[0]
    assert inspect(labelled) == Found(False, contract.DIGITAL_SOURCE_TYPE, MODEL, TOOL, fmt)
    assert inspect(data) == Found(False, None, None, None, fmt)


def test_png_packet_is_an_itxt_right_after_ihdr() -> None:
    labelled = label(SAMPLES["png-rgba"](), model=MODEL, creator_tool=TOOL)
    chunks = png_chunks(labelled)
    assert [kind for kind, _ in chunks[:3]] == [b"IHDR", b"iTXt", b"IDAT"]
    keyword, _, rest = chunks[1][1].partition(b"\x00")
    assert keyword == b"XML:com.adobe.xmp"
    assert rest[:4] == b"\x00\x00\x00\x00"  # uncompressed, no language, no translated keyword


def test_jpeg_packet_follows_jfif_and_exif_and_exif_survives() -> None:
    data = SAMPLES["jpeg-exif"]()
    labelled = label(data, model=MODEL, creator_tool=TOOL)
    markers, pos = [], 2
    while labelled[pos + 1] != 0xDA:
        markers.append(labelled[pos + 1])
        pos += 2 + int.from_bytes(labelled[pos + 2 : pos + 4], "big")
    assert markers[:3] == [0xE0, 0xE1, 0xE1]
    assert labelled.find(b"Exif\x00") < labelled.find(b"http://ns.adobe.com/xap/1.0/\x00")
    with Image.open(io.BytesIO(labelled)) as image:
        assert image.getexif()[0x0131] == "camera-ish"


@pytest.mark.parametrize("name", [n for n in SAMPLES if n.startswith("webp")])
def test_webp_becomes_extended_with_xmp_flag_and_true_canvas(name: str) -> None:
    data = SAMPLES[name]()
    labelled = label(data, model=MODEL, creator_tool=TOOL)
    assert int.from_bytes(labelled[4:8], "little") == len(labelled) - 8
    assert labelled[12:16] == b"VP8X"
    flags = labelled[20]
    width = int.from_bytes(labelled[24:27], "little") + 1
    height = int.from_bytes(labelled[27:30], "little") + 1
    with Image.open(io.BytesIO(data)) as image:
        assert (width, height) == image.size
        assert bool(flags & 0x10) == (image.mode == "RGBA")
    assert flags & 0x04
    assert labelled.count(b"XMP ") == 1


def test_webp_whose_last_chunk_lacks_its_pad_byte_stays_aligned() -> None:
    data = next(
        d
        for seed in range(100)
        if (d := encode(noise("RGBA", (9, 7), seed), "WEBP", lossless=True))[16] % 2
    )
    unpadded = b"RIFF" + struct.pack("<I", len(data) - 9) + data[8:-1]
    labelled = label(unpadded, model=MODEL, creator_tool=TOOL)
    assert frames(labelled) == frames(data)  # Pillow refuses `unpadded` itself
    assert pillow_xmp(labelled)["AISystemUsed"] == MODEL


@pytest.mark.parametrize("name", SAMPLES)
def test_labelling_twice_leaves_one_packet(name: str) -> None:
    once = label(SAMPLES[name](), model="first-model", creator_tool=TOOL)
    twice = label(once, model=MODEL, creator_tool=TOOL)
    assert twice.count(b"<?xpacket begin") == 1
    assert pillow_xmp(twice)["AISystemUsed"] == MODEL
    assert inspect(twice).ai_system == MODEL
    assert frames(twice) == frames(once)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_packet_another_tool_wrote_is_replaced(fmt: str) -> None:
    foreign = xmp_packet(model="someone-else", creator_tool="other tool").decode()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", foreign, zip=True)
        data = encode(noise("RGB"), fmt, pnginfo=info)
    else:
        data = encode(noise("RGB"), fmt, xmp=foreign.encode())
    assert inspect(data).ai_system == "someone-else"  # compressed iTXt read too
    labelled = label(data, model=MODEL, creator_tool=TOOL)
    assert inspect(labelled).ai_system == MODEL
    assert labelled.count(b"someone-else") == 0 and labelled.count(b"<?xpacket begin") == 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_values_are_escaped_and_the_prompt_only_when_given(fmt: str) -> None:
    prompt = 'a <fox> & "hound"\nunder ünïcode 🌙\x00\x07 skies'
    model = "m<&>'\""
    labelled = label(encode(noise("RGB"), fmt), model=model, creator_tool=TOOL, prompt=prompt)
    description = pillow_xmp(labelled)
    assert description["AIPromptInformation"] == prompt.replace("\x00", "").replace("\x07", "")
    assert description["AISystemUsed"] == model
    assert inspect(labelled).ai_system == model


def test_jpeg_prompt_too_long_for_one_segment_is_cut_not_refused() -> None:
    prompt = "fox & hound " * 20_000  # 240 kB, more once '&' is escaped
    labelled = label(SAMPLES["jpeg-jfif"](), model=MODEL, creator_tool=TOOL, prompt=prompt)
    kept = pillow_xmp(labelled)["AIPromptInformation"]
    assert kept.endswith("…") and prompt.startswith(kept[:-1]) and len(kept) > 40_000
    start = labelled.index(b"http://ns.adobe.com/xap/1.0/\x00")
    assert int.from_bytes(labelled[start - 2 : start], "big") <= 0xFFFF


def test_xmp_packet_is_a_standard_wrapped_packet() -> None:
    packet = xmp_packet(model=MODEL, creator_tool=TOOL, prompt="p")
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert packet.endswith(b'<?xpacket end="w"?>')
    assert contract.IPTC_EXT_NS.encode() in packet and contract.XMP_NS.encode() in packet


# ---------------------------------------------------------------------------------------------
# Reading labels other tools wrote


def png_with_packet(packet: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet)
    return encode(noise("RGB"), "PNG", pnginfo=info)


def test_inspect_reads_attribute_form_under_any_prefix() -> None:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        f'22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:ie="{contract.IPTC_EXT_NS}"'
        f' xmlns:t="{contract.XMP_NS}" ie:DigitalSourceType="{contract.DIGITAL_SOURCE_TYPE}"'
        ' ie:AISystemUsed="flux &amp; co" t:CreatorTool="Tool"/></rdf:RDF></x:xmpmeta>'
    )
    found = inspect(png_with_packet(packet))
    assert found == Found(False, contract.DIGITAL_SOURCE_TYPE, "flux & co", "Tool", "png")


def test_inspect_reads_resource_and_alt_forms() -> None:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        f'22-rdf-syntax-ns#"><rdf:Description xmlns:I="{contract.IPTC_EXT_NS}">'
        f'<I:DigitalSourceType rdf:resource="{contract.DIGITAL_SOURCE_TYPE}"/>'
        '<I:AISystemUsed><rdf:Alt><rdf:li xml:lang="x-default">flux</rdf:li></rdf:Alt>'
        "</I:AISystemUsed></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    found = inspect(png_with_packet(packet))
    assert (found.digital_source_type, found.ai_system) == (contract.DIGITAL_SOURCE_TYPE, "flux")


@pytest.mark.parametrize(
    "packet",
    [
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><r xmlns:I="{contract.IPTC_EXT_NS}">'
        "<I:AISystemUsed>&b;</I:AISystemUsed></r></x:xmpmeta>",
        "<x:xmpmeta not xml at all",
        "",
    ],
)
def test_inspect_does_not_read_dtds_or_broken_packets(packet: str) -> None:
    assert inspect(png_with_packet(packet)) == Found(False, None, None, None, "png")


# ---------------------------------------------------------------------------------------------
# C2PA


MANIFESTS = {
    "png": (SAMPLES["png-rgba"], jumbf()),
    "jpeg-label": (SAMPLES["jpeg-jfif"], jumbf(uuid=bytes(16))),
    "jpeg-uuid": (SAMPLES["jpeg-jfif"], jumbf(toggles=0x00)),
    "jpeg-xlbox": (SAMPLES["jpeg-jfif"], b"\x00\x00\x00\x01jumb" + bytes(8) + jumbf()[8:]),
    "webp": (SAMPLES["webp-vp8x-alpha"], jumbf()),
}


@pytest.mark.parametrize("name", MANIFESTS)
def test_c2pa_is_detected_and_never_labelled(name: str) -> None:
    make, box = MANIFESTS[name]
    plain = make()
    signed = with_c2pa(plain, box)
    assert frames(signed) == frames(plain)  # a valid container that Pillow still reads
    assert c2pa_present(signed) and not c2pa_present(plain)
    assert inspect(signed).c2pa
    with pytest.raises(ValueError, match="C2PA"):
        label(signed, model=MODEL, creator_tool=TOOL)


@pytest.mark.parametrize(
    "box",
    [jumbf(label=b"other", uuid=bytes(16)), jumbf(label=b"c2pa")[:8] + b"not a description box"],
)
def test_other_jumbf_in_app11_is_not_c2pa(box: bytes) -> None:
    data = with_c2pa(SAMPLES["jpeg-jfif"](), box)
    assert not c2pa_present(data)
    assert inspect(label(data, model=MODEL, creator_tool=TOOL)).ai_system == MODEL


def signer() -> Any:
    """A c2pa-python signer: an ES256 leaf with the email-protection EKU under a throwaway CA."""
    c2pa = pytest.importorskip("c2pa")
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def cert(name: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
        now = datetime.datetime.now(datetime.UTC)

        def attrs(cn: str) -> Any:
            oid = x509.NameOID
            return x509.Name(
                [
                    x509.NameAttribute(oid.COMMON_NAME, cn),
                    x509.NameAttribute(oid.ORGANIZATION_NAME, "t"),
                ]
            )

        usage = [False] * 9
        usage[5 if ca else 0] = usage[6 if ca else 0] = True  # cert+CRL signing, or signing
        build = (
            x509.CertificateBuilder(attrs(name), attrs(issuer), key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(*usage), critical=True)
        )
        if not ca:
            eku = x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.EMAIL_PROTECTION])
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            for extension in (eku, aki, ski):
                build = build.add_extension(extension, critical=False)
        return build.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM)
        for c in (cert("leaf", key, "ca", ca_key, False), cert("ca", ca_key, "ca", ca_key, True))
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, pem, None))


@pytest.mark.parametrize("name", ["png-rgba", "jpeg-jfif", "webp-vp8"])
def test_real_c2pa_manifest_from_c2pa_python(name: str) -> None:
    c2pa = pytest.importorskip("c2pa")
    created = {"action": "c2pa.created", "digitalSourceType": contract.DIGITAL_SOURCE_TYPE}
    manifest = {
        "claim_generator_info": [{"name": "fluxclaw-test"}],
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}],
    }
    data, out = SAMPLES[name](), io.BytesIO()
    mime = "image/" + name.split("-")[0]
    c2pa.Builder.from_json(json.dumps(manifest)).sign(signer(), mime, io.BytesIO(data), out)
    signed = out.getvalue()
    assert c2pa_present(signed) and not c2pa_present(data)
    with pytest.raises(ValueError, match="C2PA"):
        label(signed, model=MODEL, creator_tool=TOOL)


# ---------------------------------------------------------------------------------------------
# Hostile bytes


def only_value_errors(data: bytes) -> None:
    """Every entry point on `data` returns or raises ValueError, nothing else."""
    calls: list[Callable[[], object]] = [
        lambda: c2pa_present(data),
        lambda: inspect(data),
        lambda: label(data, model=MODEL, creator_tool=TOOL, prompt="p"),
    ]
    for call in calls:
        with contextlib.suppress(ValueError):
            call()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["png-rgba", "jpeg-exif", "webp-vp8l-alpha", "webp-animated"])
def test_every_truncation_and_random_mutation_raises_only_value_error(name: str) -> None:
    data = label(SAMPLES[name](), model=MODEL, creator_tool=TOOL)
    data = with_c2pa(data, jumbf()) if name != "jpeg-exif" else data
    for cut in range(len(data)):
        only_value_errors(data[:cut])
    rng = random.Random(name)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(8, min(len(data), 400))] = rng.randrange(256)
        only_value_errors(bytes(mutated))


def test_random_bytes_are_not_images() -> None:
    rng = random.Random(7)
    for size in (0, 1, 7, 12, 100, 5000):
        data = rng.randbytes(size)
        assert not c2pa_present(data)
        assert inspect(data) == Found(False, None, None, None, None)
        with pytest.raises(ValueError, match="not a PNG"):
            label(data, model=MODEL, creator_tool=TOOL)


def test_broken_containers_raise_value_error() -> None:
    png, jpeg, webp = SAMPLES["png-rgba"](), SAMPLES["jpeg-jfif"](), SAMPLES["webp-vp8"]()
    app0_end = 4 + int.from_bytes(jpeg[4:6], "big")
    broken = [
        png[:40],  # cut mid-chunk
        png[:33] + struct.pack(">I", 0xFFFFFFF0) + b"caBX",  # a length no file has
        png[:33],  # no IEND
        jpeg[:app0_end] + b"\xff\xe1\xff\xf0" + b"x" * 10,  # segment length past the end
        jpeg[:app0_end] + b"\x00\x00",  # no marker where one belongs
        webp[:4] + struct.pack("<I", len(webp)) + webp[8:],  # RIFF size lie: too big
        webp[:4] + struct.pack("<I", 10) + webp[8:],  # too small for its chunk
        webp[:16] + struct.pack("<I", 0xFFFFFFFF) + webp[20:],  # chunk size lie
    ]
    for data in broken:
        with pytest.raises(ValueError):
            c2pa_present(data)
        with pytest.raises(ValueError):
            label(data, model=MODEL, creator_tool=TOOL)
