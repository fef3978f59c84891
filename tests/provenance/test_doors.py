"""Provenance through every door (library `save`, sync and async; the CLI; a batch; MCP), each
against a sandbox that serves PNG, JPEG and WebP with and without C2PA Content Credentials,
checked with independent readers: c2pa-python's `Reader` (through `credentials.verify`) and
Pillow's `getxmp()`. A file with credentials is written byte for byte as served, and its
manifest still verifies (no data hash mismatch); one without is labelled AI-made (IPTC) with
the served pixels unchanged; `fluxclaw provenance --json` reports each case. The OpenClaw
plugin's door is in tests/openclaw/test_provider_plugin.py."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from fluxclaw import AsyncClient, Client, PollPolicy, contract, credentials
from tests.reliability.round2 import KEY, cli, env_for, mcp

FORMATS = ("png", "jpeg", "webp")
CASES = [(fmt, signed) for fmt in FORMATS for signed in (True, False)]
SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
FAST = PollPolicy(time_scale=0.01)
DOORS = ["library", "async", "cli", "batch", "mcp"]
FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))


def _prompt(fmt: str, signed: bool) -> str:
    return f"a teapot {fmt} {'signed' if signed else 'plain'} [sandbox:format={fmt}]" + (
        "" if signed else " [sandbox:c2pa=off]"
    )


def _served(sandbox: Any, prompt: str) -> bytes:
    """The bytes the sandbox served for the task made from `prompt` (cached: the same again)."""
    [task] = [t for t in sandbox.tasks() if t["request"]["prompt"] == prompt]
    url = f"{sandbox.base_url}/_images/{task['id']}/0{SUFFIX[task['image_format']]}"
    return httpx.get(url, timeout=30).content


def _pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


def _xmp(path: Path) -> dict[str, Any]:
    with Image.open(path) as image:
        return image.getxmp()


def _label_of(xmp: dict[str, Any]) -> tuple[str | None, str | None]:
    description = xmp["xmpmeta"]["RDF"]["Description"]
    return description.get("DigitalSourceType"), description.get("AISystemUsed")


def _save_through(door: str, sandbox: Any, root: Path, out: Path) -> dict[str, Path]:
    """Each case's prompt made and saved through `door`; the file each was saved as."""
    prompts = [_prompt(fmt, signed) for fmt, signed in CASES]
    if door == "library":
        with Client(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client:
            return {p: client.save(client.generate(p), out)[0].path for p in prompts}
    if door == "async":

        async def go() -> dict[str, Path]:
            async with AsyncClient(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client:
                return {
                    p: (await client.save(await client.generate(p), out))[0].path for p in prompts
                }

        return asyncio.run(go())
    env = env_for(root, sandbox.base_url)
    if door == "cli":
        found = {}
        for prompt in prompts:
            done = cli(root, env, "generate", prompt, "-o", str(out) + "/", "--json")
            assert done.returncode == 0, done.stderr
            found[prompt] = Path(json.loads(done.stdout)["paths"][0])
        return found
    if door == "batch":
        rows = root / "work" / "rows.jsonl"
        rows.parent.mkdir(parents=True, exist_ok=True)
        rows.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
        done = cli(root, env, "batch", str(rows), "-o", str(out))
        assert done.returncode == 0, done.stderr
        lines = [json.loads(t) for t in (out / "manifest.jsonl").read_text().splitlines()]
        return {line["prompt"]: Path(line["path"]) for line in lines}
    calls = [("generate", {"prompt": p}) for p in prompts]
    answers = mcp(root, env, calls)
    assert not any(is_error for is_error, _ in answers), answers
    saved = sorted((root / "mcp-out").rglob("*.*"))
    images = [p for p in saved if p.suffix in (".png", ".jpg", ".webp")]
    found = {}
    for image in images:  # the sidecar says which prompt it was
        found[json.loads(image.with_name(image.name + ".json").read_text())["prompt"]] = image
    return found


@pytest.mark.parametrize("door", DOORS)
def test_credentials_are_kept_and_the_rest_labelled(
    door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, c2pa=True)
    out = tmp_path / "out"
    saved = _save_through(door, sandbox, tmp_path, out)
    assert len(saved) == len(CASES)
    for fmt, signed in CASES:
        prompt = _prompt(fmt, signed)
        path, served = saved[prompt], _served(sandbox, prompt)
        data = path.read_bytes()
        side = json.loads(path.with_name(path.name + ".json").read_text())
        if signed:
            assert data == served, (door, fmt)  # byte for byte
            verdict = credentials.verify(data, fmt, trust_anchors=sandbox.c2pa_ca)
            assert verdict.trusted and not verdict.codes, (door, fmt, verdict.codes)
            assert verdict.digital_source_type == contract.DIGITAL_SOURCE_TYPE
            assert side["provenance"] == {"c2pa": "present", "kept": True}
        else:
            assert _pixels(data) == _pixels(served), (door, fmt)
            source_type, system = _label_of(_xmp(path))
            assert source_type == contract.DIGITAL_SOURCE_TYPE and system == side["model"]
            assert not credentials.verify(data, fmt).present
            assert side["provenance"] == {"c2pa": "absent", "label": "iptc"}
    # What a user checking their catalogue sees, one JSON object per file.
    shown = cli(
        tmp_path,
        env_for(tmp_path, sandbox.base_url),
        *("provenance", "--json", "--trust", _ca(tmp_path, sandbox)),
        *(str(saved[_prompt(fmt, signed)]) for fmt, signed in CASES),
    )
    assert shown.returncode == 0, shown.stderr
    reports = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["format"] for r in reports] == [fmt for fmt, _ in CASES]
    for report, (_, signed) in zip(reports, CASES, strict=True):
        assert report["c2pa"]["present"] is signed
        assert report["ai_label"] is True
        if signed:
            assert report["c2pa"]["state"] == "trusted"
        else:
            assert report["iptc"]["digital_source_type"] == contract.DIGITAL_SOURCE_TYPE


def _ca(root: Path, sandbox: Any) -> str:
    path = root / "sandbox-ca.pem"
    path.write_bytes(sandbox.c2pa_ca)
    return str(path)


@pytest.mark.parametrize("door", ["cli", "library"])
def test_a_conversion_that_drops_the_credentials_says_so_and_labels_the_file(
    door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, c2pa=True)
    prompt = "a signed teapot [sandbox:format=png]"
    if door == "cli":
        done = cli(
            tmp_path,
            env_for(tmp_path, sandbox.base_url),
            *("generate", prompt, "--format", "webp", "-o", str(tmp_path / "out") + "/"),
        )
        assert done.returncode == 0, done.stderr
        assert "warning: " in done.stderr and "drops the image's Content Credentials" in done.stderr
    else:
        with (
            Client(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client,
            pytest.warns(Warning, match="Content Credentials"),
        ):
            client.save(client.generate(prompt), tmp_path / "out", format="webp")
    [path] = (tmp_path / "out").glob("*.webp")
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["provenance"] == {"c2pa": "present", "kept": False, "label": "iptc"}
    assert _label_of(_xmp(path))[0] == contract.DIGITAL_SOURCE_TYPE


@pytest.mark.parametrize("door", ["cli", "library", "batch"])
def test_opt_in_signing_verifies_as_trusted_with_the_users_ca(
    door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """Signed with a CA made here: an edit (the sandbox's manifest its parent) for a signed
    image, a creation for a plain one; trusted with that CA as anchor."""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, c2pa=True)
    ca = credentials.make_test_ca(tmp_path / "ca", "Acme Shop")
    prompts = [_prompt("jpeg", True), _prompt("png", False)]
    out = tmp_path / "out"
    if door == "library":
        with Client(
            api_key=KEY,
            base_url=sandbox.base_url,
            poll=FAST,
            c2pa_cert=ca.cert_chain,
            c2pa_key=ca.key,
        ) as client:
            paths = [client.save(client.generate(p), out)[0].path for p in prompts]
    else:
        env = env_for(tmp_path, sandbox.base_url)
        signing = ["--c2pa-cert", str(ca.cert_chain), "--c2pa-key", str(ca.key)]
        paths = []
        if door == "cli":
            for prompt in prompts:
                done = cli(
                    tmp_path, env, "generate", prompt, "-o", str(out) + "/", "--json", *signing
                )
                assert done.returncode == 0, done.stderr
                paths.append(Path(json.loads(done.stdout)["paths"][0]))
        else:
            rows = tmp_path / "rows.jsonl"
            rows.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
            done = cli(tmp_path, env, "batch", str(rows), "-o", str(out), *signing)
            assert done.returncode == 0, done.stderr
            lines = [json.loads(t) for t in (out / "manifest.jsonl").read_text().splitlines()]
            paths = [Path(line["path"]) for line in lines]
    anchor = ca.ca_cert.read_bytes()
    edited = credentials.verify(paths[0].read_bytes(), "jpeg", trust_anchors=anchor)
    assert edited.trusted and edited.signer == "Acme Shop", edited
    assert edited.has_parent and edited.parent_signer and "sandbox" in edited.parent_signer
    assert edited.assertions[credentials.GENERATION_LABEL]["task_id"]
    created = credentials.verify(paths[1].read_bytes(), "png", trust_anchors=anchor)
    assert created.trusted and not created.has_parent and "c2pa.created" in created.actions
    assert created.digital_source_type == contract.DIGITAL_SOURCE_TYPE


def test_a_signing_key_that_does_not_fit_is_refused_before_paying(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    ca = credentials.make_test_ca(tmp_path / "ca")
    env = env_for(tmp_path, sandbox.base_url)
    done = cli(
        tmp_path,
        env,
        *("generate", "a lamp", "--c2pa-cert", str(ca.cert_chain), "--c2pa-key", str(ca.ca_cert)),
    )
    assert done.returncode == contract.EXIT_INVALID
    assert "cannot sign with the C2PA certificate" in done.stderr and "Traceback" not in done.stderr
    assert sandbox.tasks() == []


# `fluxclaw ARGS...` in an interpreter where c2pa-python is not installed (as a plain install).
WITHOUT_C2PA = (
    "import importlib.util, sys\n"
    "found = importlib.util.find_spec\n"
    "importlib.util.find_spec = lambda name, *a: None if name == 'c2pa' else found(name, *a)\n"
    "sys.argv[0] = 'fluxclaw'\n"
    "from fluxclaw.cli.main import main\n"
    "main()\n"
)


def test_a_plain_install_reports_presence_and_the_label_and_names_the_extra(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, c2pa=True)
    saved = _save_through("library", sandbox, tmp_path, tmp_path / "out")
    files = [str(saved[_prompt("png", True)]), str(saved[_prompt("png", False)])]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_C2PA, "provenance", "--json", *files],
        env=env_for(tmp_path, sandbox.base_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    signed, plain = (json.loads(line) for line in done.stdout.splitlines())
    assert signed["c2pa"]["present"] is True and "state" not in signed["c2pa"]
    assert "pip install 'fluxclaw[c2pa]'" in signed["c2pa"]["note"]
    assert plain["c2pa"] == {"present": False} and plain["iptc"]["ai_generated"] is True


def test_the_prompt_goes_into_the_label_only_when_asked(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    prompt = "a teapot on a shelf, studio light"
    with Client(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client:
        result = client.generate(prompt)
        [quiet] = client.save(result, tmp_path / "quiet")
        [told] = client.save(result, tmp_path / "told", label_prompt=True)
    assert "AIPromptInformation" not in _xmp(quiet.path)["xmpmeta"]["RDF"]["Description"]
    assert _xmp(told.path)["xmpmeta"]["RDF"]["Description"]["AIPromptInformation"] == prompt
