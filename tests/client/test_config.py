"""Settings resolution order and the config file's safety."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fluxclaw import contract
from fluxclaw.config import config_path, load_config, resolve_settings, write_config
from fluxclaw.errors import ValidationError


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("FLUXCLAW_CONFIG", str(path))
    monkeypatch.delenv("RUNAPI_API_KEY", raising=False)
    monkeypatch.delenv("RUNAPI_BASE_URL", raising=False)
    return path


def test_arguments_then_environment_then_file(
    monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    assert resolve_settings().api_key is None
    assert resolve_settings().base_url == contract.DEFAULT_BASE_URL
    write_config(api_key="sk-file", base_url="http://file.example")
    assert (resolve_settings().api_key, resolve_settings().source) == ("sk-file", "config")
    monkeypatch.setenv("RUNAPI_API_KEY", "sk-env")
    monkeypatch.setenv("RUNAPI_BASE_URL", "http://env.example/")
    settings = resolve_settings()
    assert (settings.api_key, settings.base_url, settings.source) == (
        "sk-env",
        "http://env.example",
        "environment",
    )
    settings = resolve_settings("sk-arg", "http://arg.example")
    assert (settings.api_key, settings.base_url) == ("sk-arg", "http://arg.example")
    assert "sk-arg" not in repr(settings)


def test_config_is_written_atomically_for_the_owner_only(isolated: Path) -> None:
    path = write_config(api_key="sk-1")
    assert path == isolated == config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_config(base_url="http://x")
    assert load_config() == {"api_key": "sk-1", "base_url": "http://x"}
    write_config(api_key="")
    assert json.loads(path.read_text()) == {"base_url": "http://x"}
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_a_broken_config_file_is_named_not_ignored(isolated: Path) -> None:
    # Ignoring it would drop the key, the base URL and the daily budget without a word.
    isolated.parent.mkdir(parents=True)
    isolated.write_text("{not json")
    for read in (load_config, resolve_settings):
        with pytest.raises(ValidationError, match="not valid JSON") as caught:
            read()
        assert str(isolated) in str(caught.value)
    isolated.write_text("[1, 2]")
    with pytest.raises(ValidationError, match="must hold a JSON object"):
        load_config()
