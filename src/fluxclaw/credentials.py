"""Content Credentials: read, verify and sign C2PA manifests with c2pa-python.

Flux 2 images from BFL carry a signed C2PA manifest; fluxclaw checks it (`verify`), adds one of
its own to an image it changed (`sign`, an edit with the original as parent) and, for tests and
the sandbox, makes a throwaway certificate authority (`make_test_ca`) that stands for BFL's.
c2pa-python and cryptography are the optional `fluxclaw[c2pa]` extra, so they are imported only
inside the functions that need them: a plain install imports this module and is told how to get
them when one is called. Everything works offline: no timestamp authority, no remote manifests,
no OCSP.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import io
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from fluxclaw import contract, provenance
from fluxclaw._version import __version__

INSTALL: Final = "pip install 'fluxclaw[c2pa]'"
GENERATION_LABEL: Final = "ai.fluxclaw.generation"
# id-kp-documentSigning (RFC 9336), one of the purposes C2PA's default trust config accepts.
DOCUMENT_SIGNING_OID: Final = "1.3.6.1.5.5.7.3.36"
MIME_TYPES: Final[dict[str, str]] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
}
# Never reach the network while reading or signing: no remote manifest, no OCSP; no thumbnail
# (it would cost a re-encode and add bytes nobody asked for).
_OFFLINE: Final[dict[str, Any]] = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": False}},
}

State = Literal["absent", "invalid", "valid", "trusted"]


class CredentialsUnavailableError(ImportError):
    """The c2pa extra is not installed; the message says how to install it."""

    def __init__(self, what: str = "Content Credentials (C2PA)") -> None:
        super().__init__(f"{what} needs the c2pa extra (c2pa-python, cryptography): {INSTALL}")


def available() -> bool:
    """Whether c2pa-python and cryptography are installed."""
    return all(importlib.util.find_spec(name) for name in ("c2pa", "cryptography"))


def require(what: str = "Content Credentials (C2PA)") -> None:
    """Raise CredentialsUnavailableError naming `what` unless the c2pa extra is installed."""
    if not available():
        raise CredentialsUnavailableError(what)


def _c2pa(what: str) -> Any:
    """The c2pa module, imported on first use (it loads a native library); it has no types."""
    require(what)
    return importlib.import_module("c2pa")


def mime_type(fmt: str) -> str:
    """`png`, `jpeg`/`jpg`, `webp` or their MIME types, as the MIME type c2pa wants."""
    name = fmt.lower().removeprefix("image/").lstrip(".")
    if name not in MIME_TYPES:
        raise ValueError(f"format {fmt!r} is not png, jpeg or webp.")
    return MIME_TYPES[name]


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes say, among the formats that carry a manifest here."""
    found = provenance.image_format(data)
    return None if found is None else MIME_TYPES[found]


# -- a test certificate authority ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestCA:
    """PEM files of a throwaway CA: its root (`ca_cert`, the trust anchor), the signer's chain
    (signing certificate then root) and the signer's private key."""

    __test__: ClassVar[bool] = False  # a class named Test* is not a pytest test class

    name: str
    ca_cert: Path
    cert_chain: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Identity:
    """The user's signing certificate chain and private key (PEM), read once per client."""

    cert_chain: bytes = field(repr=False)
    key: bytes = field(repr=False)
    cert_path: Path

    def sign(self, data: bytes, fmt: str, **options: Any) -> bytes:
        return sign(data, fmt, cert_chain=self.cert_chain, key=self.key, **options)

    def check(self) -> None:
        """Sign a 1x1 PNG: a key that is not the chain's, or a chain c2pa refuses, is found
        when the client is made, before anything is paid."""
        self.sign(_one_pixel_png(), "png", title="check")


def _one_pixel_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def make_test_ca(folder: Path, name: str = "fluxclaw test CA") -> TestCA:
    """An EC P-256 root CA and a signing certificate it issued, written to `folder` as PEM.

    The signing certificate has what C2PA asks of one (digitalSignature, an accepted extended
    key usage, not a CA, valid now) so that a manifest it signs verifies as trusted against the
    root. Both subjects have O=`name`, which c2pa reports as the signer's issuer.
    """
    require("make_test_ca")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def subject(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    # Backdated an hour so that a clock a little behind still finds them valid.
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = subject(f"{name} root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} signer"))
        .issuer_name(root_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    ExtendedKeyUsageOID.EMAIL_PROTECTION,
                    x509.ObjectIdentifier(DOCUMENT_SIGNING_OID),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    ca = TestCA(name, folder / "ca.pem", folder / "chain.pem", folder / "signer.key")
    ca.ca_cert.write_bytes(root.public_bytes(pem))
    ca.cert_chain.write_bytes(signer.public_bytes(pem) + root.public_bytes(pem))
    ca.key.touch(mode=0o600)
    ca.key.write_bytes(
        signer_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca


# -- signing ---------------------------------------------------------------------------------


def sign(
    data: bytes,
    fmt: str,
    *,
    cert_chain: bytes,
    key: bytes,
    assertions: Mapping[str, Mapping[str, Any]] | None = None,
    parent: bytes | None = None,
    title: str,
    digital_source_type: str | None = contract.DIGITAL_SOURCE_TYPE,
    claim_generator: str = "fluxclaw",
    alg: str = "es256",
) -> bytes:
    """`data` (PNG, JPEG or WebP) with a C2PA manifest embedded, signed by `cert_chain`/`key`.

    With `parent` (the original bytes, which may carry an upstream manifest such as BFL's) the
    manifest records an edit: `c2pa.opened` of that image as its `parentOf` ingredient, then
    `c2pa.edited`, so the original's credentials stay verifiable inside the new ones. Without
    it, a creation: `c2pa.created` with `digital_source_type` (AI-made by default).
    `assertions` are extra label -> data, e.g. {GENERATION_LABEL: {"model": ..., "task_id": ...}}.
    No timestamp authority is asked, so signing works offline; the signing time is then the
    certificate's validity alone.
    """
    c2pa = _c2pa("sign")

    mime = mime_type(fmt)
    if parent is None:
        created: dict[str, Any] = {"action": "c2pa.created"}
        if digital_source_type is not None:
            created["digitalSourceType"] = digital_source_type
        actions: list[dict[str, Any]] = [created]
    else:
        edited: dict[str, Any] = {"action": "c2pa.edited"}
        if digital_source_type is not None:
            edited["digitalSourceType"] = digital_source_type
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}, edited]
    manifest = {
        "claim_generator_info": [{"name": claim_generator, "version": __version__}],
        "title": title,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            *({"label": label, "data": dict(value)} for label, value in (assertions or {}).items()),
        ],
    }
    context = _context(None)
    try:
        builder = c2pa.Builder(manifest, context=context)
        with builder:
            if parent is not None:
                parent_mime = sniff(parent) or mime
                extension = parent_mime.removeprefix("image/").replace("jpeg", "jpg")
                builder.add_ingredient(
                    {"title": f"parent.{extension}", "relationship": "parentOf", "label": "parent"},
                    parent_mime,
                    io.BytesIO(parent),
                )
            info = c2pa.C2paSignerInfo(alg.encode(), cert_chain, key, None)
            with c2pa.Signer.from_info(info) as signer:
                out = io.BytesIO()
                builder.sign(signer, mime, io.BytesIO(data), out)
                return out.getvalue()
    finally:
        context.close()


# -- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an image's Content Credentials say, and whether they hold.

    `state` is c2pa's: `trusted` (valid and signed under a trust anchor), `valid` (intact, signer
    not trusted here), `invalid` (see `codes`, e.g. assertion.dataHash.mismatch for changed
    bytes) or `absent` (no manifest). `codes` are the failure codes of the active manifest and of
    its ingredients; `signer` is the signing certificate's organisation (BFL's is
    contract.BFL_SIGNER), `parent_signer` that of the manifest the parent ingredient carried.
    """

    state: State
    codes: tuple[str, ...] = ()
    signer: str | None = None
    common_name: str | None = None
    digital_source_type: str | None = None
    actions: tuple[str, ...] = ()
    has_parent: bool = False
    parent_signer: str | None = None
    title: str | None = None
    claim_generator: str | None = None
    assertions: Mapping[str, Any] = field(default_factory=dict, hash=False)
    error: str | None = None

    @property
    def present(self) -> bool:
        return self.state != "absent"

    @property
    def valid(self) -> bool:
        return self.state in ("valid", "trusted")

    @property
    def trusted(self) -> bool:
        return self.state == "trusted"

    @property
    def ai_generated(self) -> bool:
        return self.digital_source_type == contract.DIGITAL_SOURCE_TYPE

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "codes": list(self.codes),
            "actions": list(self.actions),
            "assertions": dict(self.assertions),
            "present": self.present,
            "valid": self.valid,
            "trusted": self.trusted,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)


def verify(data: bytes, fmt: str | None = None, *, trust_anchors: bytes | None = None) -> Verdict:
    """Read and validate the manifest embedded in `data`, offline.

    `trust_anchors` (PEM root certificates, e.g. a TestCA's `ca_cert`) replace c2pa's own, so a
    file signed under one of them is `trusted`; without them a sound file is `valid` at best
    (code signingCredential.untrusted). `fmt` is a hint: c2pa detects the format from the bytes.
    """
    c2pa = _c2pa("verify")

    mime = mime_type(fmt) if fmt else sniff(data)
    context = _context(trust_anchors)
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        if reader is None:
            return Verdict("absent")
        with reader:
            store: dict[str, Any] = json.loads(reader.json())
    except c2pa.C2paError as error:
        # The manifest is there but cannot be parsed (a damaged JUMBF box, say).
        return Verdict("invalid", ("manifest.unreadable",), error=str(error))
    finally:
        context.close()
    return _verdict(store)


def _context(trust_anchors: bytes | None) -> Any:
    """A c2pa Context that stays offline and trusts exactly `trust_anchors` when given."""
    settings: dict[str, Any] = dict(_OFFLINE)
    if trust_anchors is not None:
        settings["trust"] = {"trust_anchors": trust_anchors.decode("ascii")}
    return _c2pa("verify").Context.from_dict(settings)


def _verdict(store: Mapping[str, Any]) -> Verdict:
    manifests: Mapping[str, Any] = store.get("manifests") or {}
    active: Mapping[str, Any] = manifests.get(store.get("active_manifest") or "") or {}
    results: Mapping[str, Any] = store.get("validation_results") or {}
    codes: list[str] = []
    for entry in [results.get("activeManifest") or {}] + [
        delta.get("validationDeltas") or {} for delta in results.get("ingredientDeltas") or []
    ]:
        for failure in entry.get("failure") or []:
            if failure.get("code") and failure["code"] not in codes:
                codes.append(str(failure["code"]))
    raw_state = str(store.get("validation_state") or "").lower()
    state: State = (
        "trusted" if raw_state == "trusted" else "valid" if raw_state == "valid" else "invalid"
    )
    assertions = {
        str(item.get("label")): item.get("data") for item in active.get("assertions") or []
    }
    actions: list[Mapping[str, Any]] = []
    for label, value in assertions.items():
        if label.split(".v")[0] == "c2pa.actions" and isinstance(value, Mapping):
            actions.extend(a for a in value.get("actions") or [] if isinstance(a, Mapping))
    source_type = next(
        (str(a["digitalSourceType"]) for a in actions if a.get("digitalSourceType")), None
    )
    signature: Mapping[str, Any] = active.get("signature_info") or {}
    generator = active.get("claim_generator_info") or []
    generator_name = (
        generator[0].get("name") if generator and isinstance(generator[0], Mapping) else None
    ) or active.get("claim_generator")
    parent = next(
        (i for i in active.get("ingredients") or [] if i.get("relationship") == "parentOf"), None
    )
    parent_manifest: Mapping[str, Any] = (
        manifests.get(parent.get("active_manifest") or "") or {} if parent is not None else {}
    )
    return Verdict(
        state=state,
        codes=tuple(codes),
        signer=signature.get("issuer"),
        common_name=signature.get("common_name"),
        digital_source_type=source_type,
        actions=tuple(str(a.get("action")) for a in actions),
        has_parent=parent is not None,
        parent_signer=(parent_manifest.get("signature_info") or {}).get("issuer"),
        title=active.get("title"),
        claim_generator=generator_name,
        assertions=assertions,
    )


def describe(data: bytes, *, trust_anchors: bytes | None = None) -> dict[str, Any]:
    """What an image says about itself, for `fluxclaw provenance`: its format, whether it
    carries Content Credentials (verified, with signer and digital source type, when the
    `fluxclaw[c2pa]` extra is installed), and its IPTC label."""
    found = provenance.inspect(data)
    c2pa: dict[str, Any] = {"present": found.c2pa}
    if found.c2pa and available():
        try:
            c2pa.update(verify(data, found.format, trust_anchors=trust_anchors).to_dict())
        except Exception as exc:  # c2pa's own errors (a manifest or anchor it cannot read)
            c2pa.update(state="invalid", codes=["unreadable"], error=str(exc)[:300])
    elif found.c2pa:
        c2pa["verified"] = None
        c2pa["note"] = f"presence only; `{INSTALL}` verifies it"
    labelled = found.digital_source_type == contract.DIGITAL_SOURCE_TYPE
    return {
        "format": found.format,
        "c2pa": c2pa,
        "iptc": {
            "ai_generated": labelled,
            "digital_source_type": found.digital_source_type,
            "ai_system": found.ai_system,
            "creator_tool": found.creator_tool,
        },
        "ai_label": labelled
        or bool(c2pa.get("digital_source_type") == contract.DIGITAL_SOURCE_TYPE),
    }
