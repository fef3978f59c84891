"""Fixtures shared by the CLI and OpenClaw tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        FLUXCLAW_CONFIG=str(tmp_path / "config" / "config.json"),
        FLUXCLAW_DATA_DIR=str(tmp_path / "data"),
    )
    return env
