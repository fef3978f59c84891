"""Sandbox images as BFL serves them: PNG, JPEG or WebP, with C2PA Content Credentials on request.

Each test generates through the real client against a real sandbox, downloads the image over
HTTP and checks its manifest with fluxclaw.credentials, trusting the sandbox's own test CA.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

import fluxclaw
from fluxclaw import contract, credentials
from fluxclaw.cli.sandbox_cmd import command as sandbox_command
from fluxclaw.credentials import CredentialsUnavailableError, TestCA, make_test_ca, sign, verify
from fluxclaw.sandbox import images
from fluxclaw.sandbox.server import SandboxServer

pytest.importorskip("c2pa")

FORMATS = {
    "png": ("image/png", ".png"),
    "jpeg": ("image/jpeg", ".jpg"),
    "webp": ("image/webp", ".webp"),
}
FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))


@pytest.fixture
def client_for() -> Iterator[Any]:
    made: list[fluxclaw.Client] = []

    def make(handle: Any) -> fluxclaw.Client:
        poll = fluxclaw.PollPolicy(time_scale=0.01)
        made.append(fluxclaw.Client(api_key=handle.api_key, base_url=handle.base_url, poll=poll))
        return made[-1]

    yield make
    for client in made:
        client.close()


def download(url: str) -> httpx.Response:
    response = httpx.get(url, trust_env=False, timeout=30)
    response.raise_for_status()
    return response


def png_with_text_chunk(data: bytes) -> bytes:
    """The PNG with one tEXt chunk inserted before IEND: every pixel as it was."""
    body = b"tEXt" + b"Comment\x00one more chunk"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    at = data.rindex(b"IEND") - 4
    return data[:at] + chunk + data[at:]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_signed_images_verify_as_trusted_under_the_sandbox_ca(
    fmt: str, fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(image_format=fmt, c2pa=True)
    result = client_for(sandbox).generate("a lighthouse at dusk")
    mime, extension = FORMATS[fmt]
    answer = download(result.url)
    assert result.url.endswith("/0" + extension)
    assert answer.headers["content-type"] == mime
    assert credentials.sniff(answer.content) == mime
    verdict = verify(answer.content, fmt, trust_anchors=sandbox.c2pa_ca)
    assert (verdict.state, verdict.codes) == ("trusted", ()), verdict.to_json()
    assert verdict.valid and verdict.trusted and verdict.present
    assert verdict.signer == images.SIGNER_NAME
    assert verdict.common_name == f"{images.SIGNER_NAME} signer"
    assert verdict.digital_source_type == contract.DIGITAL_SOURCE_TYPE and verdict.ai_generated
    assert verdict.actions == ("c2pa.created",) and not verdict.has_parent
    assert verdict.claim_generator == images.CLAIM_GENERATOR
    generation = verdict.assertions[credentials.GENERATION_LABEL]
    assert generation == {"model": "flux-2-pro-text-to-image", "sandbox": True}
    # Without the anchor the same file is intact but its signer is nobody this verifier knows.
    untrusted = verify(answer.content)
    assert untrusted.state == "valid" and "signingCredential.untrusted" in untrusted.codes
    # The signed bytes are cached with the rendering: a second download is the same file.
    assert download(result.url).content == answer.content
    with Image.open(io.BytesIO(answer.content)) as image:
        assert image.size == contract.image_size("1:1", "1k")


def test_one_more_png_chunk_breaks_the_hard_binding(
    fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(c2pa=True)
    data = download(client_for(sandbox).generate("a red kite over the dunes").url).content
    tampered = png_with_text_chunk(data)
    with Image.open(io.BytesIO(tampered)) as image:
        image.load()  # still a sound PNG: only the manifest can tell
    verdict = verify(tampered, "png", trust_anchors=sandbox.c2pa_ca)
    assert verdict.state == "invalid" and not verdict.valid
    assert "assertion.dataHash.mismatch" in verdict.codes
    assert verdict.signer == images.SIGNER_NAME  # who signed it is still readable


def test_jpeg_and_webp_bytes_added_are_caught_too(
    fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(c2pa=True)
    client = client_for(sandbox)
    jpeg = download(client.generate("a pier [sandbox:format=jpeg]").url).content
    comment = b"\xff\xfe" + struct.pack(">H", 7) + b"hello"
    webp = download(client.generate("a pier [sandbox:format=webp]").url).content
    extra = webp + b"EXIF" + struct.pack("<I", 4) + b"abcd"
    extra = extra[:4] + struct.pack("<I", len(extra) - 8) + extra[8:]
    for tampered in (jpeg[:-2] + comment + jpeg[-2:], extra):
        verdict = verify(tampered, trust_anchors=sandbox.c2pa_ca)
        assert "assertion.dataHash.mismatch" in verdict.codes, verdict.to_json()


def test_an_edit_signed_with_our_own_ca_keeps_the_original_as_parent(
    tmp_path: Path, fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(c2pa=True)
    original = download(client_for(sandbox).generate("a fox in the snow").url).content
    ours = make_test_ca(tmp_path / "ca", "fluxclaw edits")
    with Image.open(io.BytesIO(original)) as image:
        out = io.BytesIO()
        image.convert("RGB").resize((256, 256)).save(out, "JPEG")
    edited = sign(
        out.getvalue(),
        "jpeg",
        cert_chain=ours.cert_chain.read_bytes(),
        key=ours.key.read_bytes(),
        assertions={credentials.GENERATION_LABEL: {"model": "resize", "task_id": "t-1"}},
        parent=original,
        title="fox.jpg",
        digital_source_type=None,
        claim_generator="fluxclaw",
    )
    verdict = verify(edited, "jpeg", trust_anchors=ours.ca_cert.read_bytes())
    assert (verdict.state, verdict.codes) == ("trusted", ()), verdict.to_json()
    assert verdict.actions == ("c2pa.opened", "c2pa.edited") and verdict.has_parent
    assert verdict.signer == "fluxclaw edits" and verdict.title == "fox.jpg"
    assert verdict.parent_signer == images.SIGNER_NAME
    assert verdict.assertions[credentials.GENERATION_LABEL]["task_id"] == "t-1"
    # Trusting the sandbox's CA alone, our signature is not trusted (and the edit still sound).
    assert verify(edited, trust_anchors=sandbox.c2pa_ca).state == "valid"


def test_sign_creates_and_verify_reports_files_without_a_manifest(tmp_path: Path) -> None:
    ca: TestCA = make_test_ca(tmp_path, "unit CA")
    assert {p.name for p in tmp_path.iterdir()} == {"ca.pem", "chain.pem", "signer.key"}
    assert ca.key.stat().st_mode & 0o077 == 0
    plain = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(plain, "WEBP")
    assert verify(plain.getvalue()).state == "absent" and not verify(plain.getvalue()).present
    signed = sign(
        plain.getvalue(),
        "image/webp",
        cert_chain=ca.cert_chain.read_bytes(),
        key=ca.key.read_bytes(),
        title="made.webp",
    )
    verdict = verify(signed, trust_anchors=ca.ca_cert.read_bytes())
    assert verdict.trusted and verdict.actions == ("c2pa.created",)
    assert verdict.digital_source_type == contract.DIGITAL_SOURCE_TYPE
    assert '"state": "trusted"' in verdict.to_json()
    with pytest.raises(ValueError, match="gif"):
        sign(b"GIF89a", "gif", cert_chain=b"", key=b"", title="x")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_without_c2pa_the_image_carries_no_manifest(
    fmt: str, fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(image_format=fmt)
    result = client_for(sandbox).generate("an orchard in bloom")
    answer = download(result.url)
    assert answer.headers["content-type"] == FORMATS[fmt][0]
    assert verify(answer.content).state == "absent"
    task = sandbox.tasks()[0]
    assert (task["image_format"], task["c2pa"]) == (fmt, False)


def test_prompt_directives_choose_per_task(fluxclaw_sandbox_factory: Any, client_for: Any) -> None:
    sandbox = fluxclaw_sandbox_factory()
    client = client_for(sandbox)
    signed = client.generate("a harbour [sandbox:format=webp] [sandbox:c2pa]")
    assert signed.url.endswith("/0.webp")
    answer = download(signed.url)
    assert answer.headers["content-type"] == "image/webp"
    assert verify(answer.content, trust_anchors=sandbox.c2pa_ca).trusted
    plain = client.generate("a harbour [sandbox:format=JPG]")
    assert plain.url.endswith("/0.jpg") and verify(download(plain.url).content).state == "absent"
    # The server's default can be switched off per prompt, and changed while running.
    sandbox.configure(c2pa=True, image_format="jpeg")
    off = client.generate("a harbour [sandbox:c2pa=off]")
    assert off.url.endswith("/0.jpg") and verify(download(off.url).content).state == "absent"
    on = client.generate("another harbour")
    assert verify(download(on.url).content, trust_anchors=sandbox.c2pa_ca).trusted
    # A URL with another extension is not the task's image.
    assert httpx.get(on.url[: -len("jpg")] + "png", trust_env=False).status_code == 404
    bad = httpx.post(f"{sandbox.base_url}/_sandbox/config", json={"image_format": "gif"})
    assert bad.status_code == 422 and "png, jpeg, webp" in bad.text


def test_a_remix_of_a_signed_image_is_signed_as_a_new_creation(
    fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(c2pa=True, image_format="webp")
    client = client_for(sandbox)
    first = client.generate("a teapot")
    remixed = client.remix("the teapot in blue", [first.url])
    verdict = verify(download(remixed.url).content, trust_anchors=sandbox.c2pa_ca)
    assert verdict.trusted and verdict.actions == ("c2pa.created",)


def test_without_the_extra_c2pa_fails_clearly_and_formats_still_work(
    monkeypatch: pytest.MonkeyPatch, fluxclaw_sandbox_factory: Any, client_for: Any
) -> None:
    monkeypatch.setattr(credentials, "available", lambda: False)
    with pytest.raises(CredentialsUnavailableError, match=r"pip install 'fluxclaw\[c2pa\]'"):
        SandboxServer(c2pa=True)
    with pytest.raises(CredentialsUnavailableError, match="c2pa extra"):
        verify(b"\x89PNG\r\n\x1a\n")
    sandbox = fluxclaw_sandbox_factory(image_format="webp")
    client = client_for(sandbox)
    assert download(client.generate("a quiet lane").url).headers["content-type"] == "image/webp"
    with pytest.raises(fluxclaw.TaskFailedError, match=r"fluxclaw\[c2pa\]"):
        client.generate("a quiet lane [sandbox:c2pa]")
    answer = httpx.get(f"{sandbox.base_url}/_sandbox/c2pa/ca.pem", trust_env=False)
    assert answer.status_code == 501 and "fluxclaw[c2pa]" in answer.text
    assert httpx.post(f"{sandbox.base_url}/_sandbox/config", json={"c2pa": True}).status_code == 422
    result = CliRunner().invoke(sandbox_command, ["--c2pa", "--port", "0"])
    assert result.exit_code == contract.EXIT_OTHER
    assert "fluxclaw[c2pa]" in result.output and "Traceback" not in result.output


def test_the_ca_folder_goes_when_the_server_stops() -> None:
    server = SandboxServer(c2pa=True)
    with server:
        folder = server.c2pa_ca.parent
        assert server.c2pa_ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert not folder.exists()


def test_fluxclaw_sandbox_c2pa_serves_signed_webp() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    process = subprocess.Popen(
        [FLUXCLAW, "sandbox", "--port", "0", "--speed", "100", "--c2pa", "--image-format", "webp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        anchor = download(f"{base}/_sandbox/c2pa/ca.pem").content
        headers = {"Authorization": "Bearer sk-any"}
        with fluxclaw.Client(
            api_key="sk-any", base_url=base, poll=fluxclaw.PollPolicy(time_scale=0.01)
        ) as client:
            url = client.generate("a windmill").url
        assert httpx.get(f"{base}/api/v1/me", headers=headers, trust_env=False).is_success
        assert verify(download(url).content, "webp", trust_anchors=anchor).trusted
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0 and "Traceback" not in stderr
