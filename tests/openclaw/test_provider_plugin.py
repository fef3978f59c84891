"""The `runapi` image provider plugin in a real OpenClaw (2026.9.6), installed by
`fluxclaw openclaw install --plugin` into an isolated state folder, its base URL pointed at the
sandbox: listed, used by `openclaw infer image`, chosen by `agents.defaults.mediaModels.image`,
clear when it refuses, one charge per image, the key in no process's argument list, and
`image_generate` in a whole agent turn delivering to a fake Telegram chat."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from fluxclaw import contract
from fluxclaw.sandbox.pytest_plugin import SandboxHandle
from fluxclaw.sandbox.server import SandboxServer

from .conftest import BIN, VENV_BIN, OpenClaw, make_openclaw
from .fakes import ScriptedModel, Telegram, scripted_provider, serve

KEY = "sk-plugin-SECRET-0c7e42"
FAST = {"FLUXCLAW_TIME_SCALE": "0.01"}


@pytest.fixture(scope="module")
def claw(tmp_path_factory: pytest.TempPathFactory) -> OpenClaw:
    """One OpenClaw with the plugin installed by fluxclaw's own command."""
    claw = make_openclaw(tmp_path_factory.mktemp("plugin") / "oc")
    done = subprocess.run(
        [str(VENV_BIN / "fluxclaw"), "openclaw", "install", "--plugin"],
        env=claw.env,
        cwd=claw.workspace,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return claw


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    """One sandbox for the module's OpenClaw (the plugin's base URL points at it)."""
    server = SandboxServer(speed=100, seed=0, api_key=KEY)
    server.start()
    handle = SandboxHandle(server, KEY)
    yield handle
    handle.close()


def _point_at(claw: OpenClaw, sandbox: Any, **extra: Any) -> None:
    claw.update({"plugins": {"entries": {"runapi": {"config": {"baseUrl": sandbox.base_url}}}}})
    if extra:
        claw.update(extra)


def _infer(claw: OpenClaw, *args: str, key: str | None = KEY) -> dict[str, Any]:
    env = {**FAST, "RUNAPI_API_KEY": key or ""}
    done = claw.run("infer", "image", *args, "--json", env=env, timeout=180)
    answer, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
    return dict(answer)


def test_plugin_is_loaded_with_its_three_models(claw: OpenClaw) -> None:
    inspect = claw.run("plugins", "inspect", "runapi", "--runtime", "--json")
    plugin = json.loads(inspect.stdout[inspect.stdout.index("{") :])["plugin"]
    assert plugin["status"] == "loaded" and plugin["imageGenerationProviderIds"] == ["runapi"]
    listed = claw.run("infer", "image", "providers", "--json", env={"RUNAPI_API_KEY": KEY})
    providers = json.loads(listed.stdout[listed.stdout.index("[") :])
    runapi = next(p for p in providers if p["id"] == "runapi")
    assert runapi["models"] == ["flux-2-pro", "flux-2-flex", "flux-2-max"]
    assert runapi["configured"] is True


def test_plugin_makes_images_one_charge_each(claw: OpenClaw, sandbox: Any) -> None:
    _point_at(claw, sandbox)
    work = claw.workspace
    plain = _infer(claw, "generate", "--model", "runapi/flux-2-pro", "--prompt", "a red kite")
    assert plain["ok"] and plain["provider"] == "runapi", plain
    shaped = _infer(
        claw,
        "generate",
        *("--model", "runapi/flux-2-pro", "--prompt", "a lighthouse at dusk"),
        *("--aspect-ratio", "3:4", "--resolution", "2K", "--output", str(work / "out.png")),
    )
    assert shaped["ok"], shaped
    with Image.open(work / "out.png") as image:
        width, height = image.size
        assert image.format == "PNG"
    assert abs(width / height - 3 / 4) < 0.01 and width * height > 3_500_000

    two = _infer(
        claw,
        "generate",
        *("--model", "runapi/flux-2-pro", "--prompt", "two kites", "--count", "2"),
        *("--output", str(work / "two.png")),
    )
    assert two["ok"], two
    assert (work / "two-1.png").is_file() and (work / "two-2.png").is_file()

    edit = _infer(
        claw,
        "edit",
        *("--model", "runapi/flux-2-flex", "--file", str(work / "out.png")),
        *("--prompt", "the same lighthouse in snow", "--output", str(work / "edit.png")),
    )
    assert edit["ok"], edit
    remixes = [t for t in sandbox.tasks() if t.get("action") == "remix_image"]
    assert len(remixes) == 1

    _point_at(claw, sandbox, agents={"defaults": {"mediaModels": {"image": "runapi/flux-2-flex"}}})
    default = _infer(
        claw, "generate", "--prompt", "a flexible cat", "--output", str(work / "d.png")
    )
    assert default["ok"] and default["model"] == "flux-2-flex", default

    made = 1 + 1 + 2 + 1 + 1
    charges = sandbox.ledger()["charges"]
    assert len(charges) == made == len(sandbox.tasks())
    assert len({c["task_id"] for c in charges}) == made
    assert [c["model"] for c in charges][-1].startswith("flux-2-flex")
    # Each image is recorded where it stays (fluxclaw's data folder), so the history, its
    # gallery and resume find it after OpenClaw has taken its copy.
    listed = subprocess.run(
        [str(VENV_BIN / "fluxclaw"), "history", "--json", "--limit", "100"],
        env=claw.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    paid = {c["task_id"] for c in charges}
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    rows = [row for row in rows if row["task_id"] in paid]
    assert len(rows) == made and all(row["status"] == "completed" for row in rows)
    kept = Path(claw.env["FLUXCLAW_DATA_DIR"]) / "openclaw"
    for row in rows:
        [path] = row["paths"]
        assert Path(path).is_file() and Path(path).parent == kept


def test_the_key_is_in_no_argument_list_while_generating(claw: OpenClaw, sandbox: Any) -> None:
    _point_at(claw, sandbox)
    proc = subprocess.Popen(
        [
            *(str(BIN / "openclaw"), "infer", "image", "generate", "--json"),
            *("--model", "runapi/flux-2-pro", "--prompt", "a slow owl [sandbox:seconds=5]"),
        ],
        env={**claw.env, **FAST, "RUNAPI_API_KEY": KEY},
        cwd=claw.workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    saw_fluxclaw, leaks = False, []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"fluxclaw" in cmdline and b"slow owl" in cmdline:
                saw_fluxclaw = True
            if KEY.encode() in cmdline:
                leaks.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert saw_fluxclaw, (out, err)
    assert not leaks


@pytest.mark.parametrize(
    ("args", "key", "expected"),
    [
        (("--model", "runapi/flux-2-pro"), None, 'No API key found for provider "runapi"'),
        (("--model", "runapi/flux-9"), KEY, 'unknown model "flux-9"'),
        (("--model", "runapi/flux-2-pro", "--resolution", "4K"), KEY, "4K is not available"),
        (("--model", "runapi/flux-2-max", "--count", "2"), KEY, "at most 1 image"),
    ],
)
def test_plugin_refuses_clearly_and_charges_nothing(
    claw: OpenClaw, sandbox: Any, args: tuple[str, ...], key: str | None, expected: str
) -> None:
    _point_at(claw, sandbox)
    before = len(sandbox.requests())
    answer = _infer(claw, "generate", *args, "--prompt", "a refused request", key=key)
    assert answer["ok"] is False
    assert expected in answer["error"]["message"], answer
    assert len(sandbox.requests()) == before  # refused before fluxclaw sent anything


@pytest.mark.round2("the key stays home")
def test_plugin_refuses_a_prompt_that_holds_the_key(claw: OpenClaw, sandbox: Any) -> None:
    """A prompt that holds the key is refused before sending and not echoed (OpenClaw plugin)"""
    _point_at(claw, sandbox)
    before = len(sandbox.requests())
    prompt = f"a neon sign that says {KEY}"
    answer = _infer(claw, "generate", "--model", "runapi/flux-2-pro", "--prompt", prompt)
    assert answer["ok"] is False
    assert "holds your RunAPI key" in answer["error"]["message"], answer
    assert KEY not in json.dumps(answer)
    assert len(sandbox.requests()) == before


@pytest.mark.round2("resume hints")
def test_a_time_out_names_the_task_to_resume(claw: OpenClaw, fluxclaw_sandbox_factory: Any) -> None:
    """A plugin time-out's hint resumes into fluxclaw's data folder and says so (OpenClaw)"""
    slow = fluxclaw_sandbox_factory(api_key=KEY, speed=1)
    _point_at(claw, slow)
    answer = _infer(
        claw,
        "generate",
        *("--model", "runapi/flux-2-pro", "--prompt", "a very slow owl [sandbox:seconds=120]"),
        *("--timeout-ms", "3000"),
    )
    assert answer["ok"] is False
    message = answer["error"]["message"]
    task_id = slow.tasks()[0]["id"]
    assert "timed out" in message and f"fluxclaw resume {task_id}" in message, message
    assert str(Path(claw.env["FLUXCLAW_DATA_DIR"]) / "openclaw") in message  # where it goes
    assert slow.ledger()["charges"] == []


def test_image_generate_in_an_agent_turn_reaches_the_chat(claw: OpenClaw, sandbox: Any) -> None:
    """The scripted model calls OpenClaw's own image_generate tool with runapi/flux-2-pro; a cron
    session key makes the tool finish inside the turn, so the image rides on the final reply."""
    args = {"prompt": "a studio photo of a ceramic mug", "model": "runapi/flux-2-pro"}
    model, telegram = ScriptedModel(tool="image_generate", args=args), Telegram()
    before = len(sandbox.ledger()["charges"])
    with serve(model, telegram) as (model_port, telegram_port):
        _point_at(
            claw,
            sandbox,
            tools={"toolSearch": False},
            models={"providers": scripted_provider(model_port)},
            agents={"defaults": {"model": {"primary": "fake/scripted"}}},
            channels={
                "telegram": {
                    "enabled": True,
                    "botToken": "123456:X",
                    "apiRoot": f"http://127.0.0.1:{telegram_port}",
                }
            },
        )
        done = claw.run(
            *("agent", "--local", "--agent", "main", "--channel", "telegram", "--to", "12345"),
            *("--session-key", "agent:main:cron:mug:run:1", "--deliver"),
            *("--message", "make me a photo of a ceramic mug", "--json"),
            env={**FAST, "RUNAPI_API_KEY": KEY},
            timeout=240,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    photos = [data for method, data in telegram.uploads if method in ("sendPhoto", "sendDocument")]
    assert len(photos) == 1, (telegram.calls, done.stdout[-2000:])
    charges = sandbox.ledger()["charges"][before:]
    assert len(charges) == 1
    # Byte for byte: the image the sandbox rendered for that task is what the chat got.
    # Byte for byte: the file OpenClaw saved from the provider is what the chat got; it is the
    # sandbox's image for that task (same pixels) with fluxclaw's provenance inside.
    saved = list((claw.root / "state" / "media" / "tool-image-generation").glob("*.png"))
    assert [path.read_bytes() for path in saved] == photos
    task_id = charges[0]["task_id"]
    headers = {"Authorization": f"Bearer {KEY}"}
    status = httpx.get(
        f"{sandbox.base_url}{contract.status_path('text_to_image', task_id)}", headers=headers
    ).json()
    original = httpx.get(status["images"][0]["url"]).content
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(photos[0])) as b:
        assert a.size == b.size and a.tobytes() == b.tobytes()
        assert task_id in b.info["fluxclaw"]
    assert all(KEY.encode() not in body for body in model.requests)


def test_a_missing_fluxclaw_says_how_to_install_it(
    claw: OpenClaw, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no" / "fluxclaw")
    _point_at(claw, sandbox)
    claw.update({"plugins": {"entries": {"runapi": {"config": {"fluxclawPath": missing}}}}})
    try:
        answer = _infer(claw, "generate", "--model", "runapi/flux-2-pro", "--prompt", "a cat")
    finally:
        claw.update(
            {
                "plugins": {
                    "entries": {"runapi": {"config": {"fluxclawPath": str(VENV_BIN / "fluxclaw")}}}
                }
            }
        )
    assert answer["ok"] is False
    message = answer["error"]["message"]
    assert missing in message and "pip install fluxclaw" in message, message


def test_the_plugin_keeps_content_credentials_and_labels_the_rest(
    claw: OpenClaw, fluxclaw_sandbox_factory: Any
) -> None:
    """The plugin's images go through fluxclaw's saving: a signed image is kept byte for byte
    (its manifest verifies), a plain one is labelled AI-made with its pixels unchanged."""
    from fluxclaw import credentials

    signing = fluxclaw_sandbox_factory(api_key=KEY, c2pa=True)
    _point_at(claw, signing)
    work = claw.workspace
    made = {}
    for name, prompt in (
        ("signed", "a signed kite [sandbox:format=jpeg]"),
        ("plain", "a plain kite [sandbox:format=webp] [sandbox:c2pa=off]"),
    ):
        answer = _infer(
            claw,
            "generate",
            *("--model", "runapi/flux-2-pro", "--prompt", prompt),
            *("--output", str(work / f"{name}.out")),
        )
        assert answer["ok"], answer
        [task] = [t for t in signing.tasks() if t["request"]["prompt"] == prompt]
        suffix = ".jpg" if "jpeg" in prompt else ".webp"
        served = httpx.get(f"{signing.base_url}/_images/{task['id']}/0{suffix}", timeout=30)
        kept = Path(claw.env["FLUXCLAW_DATA_DIR"]) / "openclaw"
        [path] = [p for p in kept.glob(f"*{task['id'][:8]}*") if p.suffix == suffix]
        made[name] = (path.read_bytes(), served.content)
    data, served = made["signed"]
    assert data == served
    verdict = credentials.verify(data, "jpeg", trust_anchors=signing.c2pa_ca)
    assert verdict.trusted and not verdict.codes
    data, served = made["plain"]
    with Image.open(io.BytesIO(data)) as image, Image.open(io.BytesIO(served)) as original:
        assert image.tobytes() == original.tobytes()
        xmp = image.getxmp()["xmpmeta"]["RDF"]["Description"]
    assert xmp["DigitalSourceType"] == contract.DIGITAL_SOURCE_TYPE
