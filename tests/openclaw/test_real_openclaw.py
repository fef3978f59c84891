"""The skill as a real OpenClaw sees it: eligibility, what is missing, and its own linter."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import BIN, RUNTIME, SKILLS, OpenClaw


def skill_info(openclaw: OpenClaw, **env: str) -> dict[str, object]:
    done = openclaw.run("skills", "info", "fluxclaw", "--json", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    info: dict[str, object] = json.loads(done.stdout)
    return info


def test_eligible_with_key_from_skill_entry_and_binary(openclaw: OpenClaw) -> None:
    openclaw.configure({"skills": {"entries": {"fluxclaw": {"apiKey": "sk-from-entry"}}}})
    info = skill_info(openclaw)
    assert info["eligible"] is True
    assert info["primaryEnv"] == "RUNAPI_API_KEY"


def test_eligible_with_key_in_environment(openclaw: OpenClaw) -> None:
    assert skill_info(openclaw, RUNAPI_API_KEY="sk-env")["eligible"] is True


def test_names_what_is_missing(openclaw: OpenClaw) -> None:
    info = skill_info(openclaw, PATH=f"{BIN}:/usr/bin:/bin")  # no fluxclaw, no key
    assert info["eligible"] is False
    missing = info["missing"]
    assert isinstance(missing, dict)
    assert missing["env"] == ["RUNAPI_API_KEY"] and missing["bins"] == ["fluxclaw"]


def test_packaged_skill_linter_passes() -> None:
    linter = RUNTIME / "node_modules/openclaw/skills/skill-creator/scripts/quick_validate.py"
    done = subprocess.run(
        [sys.executable, str(linter), str(SKILLS / "fluxclaw")], capture_output=True, text=True
    )
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr
