"""A real OpenClaw (pinned, on Node 24, installed by `make test`) in an isolated state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "openclaw" / "runtime"
BIN = RUNTIME / "node_modules" / ".bin"
SKILLS = ROOT / "openclaw" / "skills"
VENV_BIN = Path(sys.executable).parent


@dataclass
class OpenClaw:
    root: Path
    config_path: Path
    workspace: Path
    env: dict[str, str]

    def configure(self, config: dict[str, Any]) -> None:
        base = {"skills": {"load": {"extraDirs": [str(SKILLS)], "watch": False}}}
        merged = _merge(base, config)
        self.config_path.write_text(json.dumps(merged, indent=2))

    def update(self, config: dict[str, Any]) -> None:
        """Merge into the config as it is now (after `openclaw` itself has written to it)."""
        current = json.loads(self.config_path.read_text())
        self.config_path.write_text(json.dumps(_merge(current, config), indent=2))

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "openclaw"), *args],
            env={**self.env, **(env or {})},
            cwd=self.workspace,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) else value
    return out


def make_openclaw(root: Path) -> OpenClaw:
    """A real OpenClaw whose home, caches, state and config all live under `root`."""
    if not (BIN / "openclaw").exists():
        pytest.fail(f"OpenClaw is not installed: run {RUNTIME / 'install.sh'} (make test does)")
    for name in ("home", "cache", "state", "workspace"):
        (root / name).mkdir(parents=True)
    env = {
        "PATH": os.pathsep.join([str(BIN), str(VENV_BIN), "/usr/bin", "/bin"]),
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "OPENCLAW_STATE_DIR": str(root / "state"),
        "OPENCLAW_CONFIG_PATH": str(root / "openclaw.json"),
        "FLUXCLAW_DATA_DIR": str(root / "fluxclaw-data"),
        "FLUXCLAW_CONFIG": str(root / "fluxclaw-config.json"),
    }
    claw = OpenClaw(root, root / "openclaw.json", root / "workspace", env)
    claw.configure({})
    return claw


@pytest.fixture
def openclaw(tmp_path: Path) -> OpenClaw:
    return make_openclaw(tmp_path / "oc")
