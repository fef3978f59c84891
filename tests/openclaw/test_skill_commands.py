"""The commands the skill teaches, run exactly as written, against a sandbox.

What OpenClaw accepts as an attachment: a standalone `MEDIA:<absolute path>` line, no space after
the colon, no spaces in the path, inside the agent's workspace (the exec working folder).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.cli.conftest import FLUXCLAW

ROOT = Path(__file__).resolve().parents[2]
SKILL = ROOT / "openclaw" / "skills" / "fluxclaw" / "SKILL.md"
KEY = "sk-skill-test"


def skill_commands() -> dict[str, list[str]]:
    """The indented `fluxclaw ...` command lines of SKILL.md, by subcommand."""
    found: dict[str, list[str]] = {}
    for line in SKILL.read_text().splitlines():
        if line.startswith("    fluxclaw "):
            words = shlex.split(line.strip())
            found.setdefault(words[1], words)
    return found


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def env(cli_env: dict[str, str], fluxclaw_sandbox_factory: Any) -> dict[str, str]:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    cli_env.update(
        RUNAPI_API_KEY=KEY,
        RUNAPI_BASE_URL=sandbox.base_url,
        FLUXCLAW_TIME_SCALE="0.01",
        OPENCLAW_SHELL="exec",  # what OpenClaw sets for commands run by `exec`
    )
    return cli_env


def run_skill_command(words: list[str], env: dict[str, str], cwd: Path) -> list[Path]:
    done = subprocess.run(
        [FLUXCLAW, *words[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"task [0-9a-f-]{36}", done.stderr)  # the task id reaches the agent
    media = [line for line in done.stdout.splitlines() if line.startswith("MEDIA:")]
    assert media and media == done.stdout.splitlines()
    paths = []
    for line in media:
        assert re.fullmatch(r"MEDIA:/\S+", line), line
        path = Path(line.removeprefix("MEDIA:"))
        assert path.is_absolute() and ".." not in path.parts
        assert path.is_relative_to(cwd.resolve() / "generated" / "fluxclaw")
        with Image.open(path) as image:
            assert image.format == "PNG"
        paths.append(path)
    return paths


def test_skill_generate_command(env: dict[str, str], workspace: Path) -> None:
    words = skill_commands()["generate"]
    words = [w.replace("PROMPT", "a studio photo of a ceramic mug") for w in words]
    run_skill_command(words, env, workspace)


def test_skill_remix_command_with_a_photo_from_the_chat(
    env: dict[str, str], workspace: Path
) -> None:
    photo = workspace / "inbound" / "photo.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (120, 90), (10, 120, 40)).save(photo)
    words = skill_commands()["remix"]
    words = [
        w.replace("PROMPT", "the same scene at night").replace("/path/to/photo.jpg", str(photo))
        for w in words
    ]
    run_skill_command(words, env, workspace)


def test_skill_wait_command_resumes(env: dict[str, str], workspace: Path) -> None:
    done = subprocess.run(
        [FLUXCLAW, "generate", "a quiet harbor [sandbox:seconds=0.2]", "--async"],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
    )
    task_id = done.stdout.strip()
    words = [w.replace("<id>", task_id) for w in skill_commands()["wait"]]
    run_skill_command(words, env, workspace)


def test_openclaw_install_into_a_workspace(cli_env: dict[str, str], workspace: Path) -> None:
    done = subprocess.run(
        [FLUXCLAW, "openclaw", "install", "--workspace", str(workspace)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    installed = workspace / "skills" / "fluxclaw" / "SKILL.md"
    assert installed.read_text() == SKILL.read_text()
    assert '"apiKey"' in done.stderr and "skills" in done.stderr


def test_skill_frontmatter_declares_key_and_binary() -> None:
    text = SKILL.read_text()
    front = text.split("---")[1]
    assert re.search(r"^name: fluxclaw$", front, re.M)
    assert '"primaryEnv": "RUNAPI_API_KEY"' in front
    assert '"env": ["RUNAPI_API_KEY"]' in front and '"bins": ["fluxclaw"]' in front
    assert '"kind": "uv"' in front
    assert "yieldMs: 120000" in text and "timeoutSeconds: 300" in text


def test_openclaw_install_names_the_fluxclaw_the_skill_will_run(
    cli_env: dict[str, str], workspace: Path
) -> None:
    here = Path(FLUXCLAW)
    missing = (
        "warning: fluxclaw is not on PATH, so OpenClaw will list the skill as 'Needs setup'; "
        "install it as a tool (pipx install 'fluxclaw[sandbox]'"
    )
    cases = {
        f"{here.parent}:/usr/bin:/bin": [f"the skill will run the fluxclaw on PATH: {here}"],
        "/usr/bin:/bin": [missing, f"or add {here.parent} to PATH."],
    }
    for path, said in cases.items():
        done = subprocess.run(
            [FLUXCLAW, "openclaw", "install", "--workspace", str(workspace)],
            env={**cli_env, "PATH": path},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert all(words in done.stderr for words in said), done.stderr
