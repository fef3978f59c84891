"""`fluxclaw config` for humans: values checked before they are stored, and every setting shown
with where it came from, in words (never a Python repr, never the key)."""

from __future__ import annotations

import json
import os
import pty
from pathlib import Path

from fluxclaw import contract

from .conftest import FLUXCLAW, KEY, Run, one_line_error, read_until


def test_a_base_url_that_is_no_url_is_refused_and_nothing_is_written(
    run: Run, cli_env: dict[str, str]
) -> None:
    config = Path(cli_env["FLUXCLAW_CONFIG"])
    done = run("config", "--base-url", "notaurl")
    assert done.returncode == contract.EXIT_INVALID
    assert "http(s) URL" in one_line_error(done.stderr)
    assert not config.exists()
    assert (
        run("config", "--base-url", "https://good.example", "--daily-budget", "1").returncode == 0
    )
    before = config.read_bytes()
    refused = run("config", "--base-url", "notaurl", "--daily-budget", "2")  # all or nothing
    assert refused.returncode == contract.EXIT_INVALID
    one_line_error(refused.stderr)
    assert config.read_bytes() == before


def test_a_stored_url_shows_as_from_the_file_and_the_environment_wins(run: Run) -> None:
    stored = run("config", "--base-url", "https://stored.example")
    assert stored.returncode == 0, stored.stderr
    assert row(stored.stdout, "base_url") == ["base_url", "https://stored.example", "file"]
    env = {"RUNAPI_BASE_URL": "https://env.example/"}
    shown = run("config", env=env)
    assert row(shown.stdout, "base_url") == ["base_url", "https://env.example", "environment"]
    again = run("config", "--base-url", "https://other.example", env=env)
    assert "RUNAPI_BASE_URL is set and wins" in again.stderr
    assert row(again.stdout, "base_url")[2] == "environment"


def test_plain_http_to_another_machine_is_stored_with_a_warning(run: Run) -> None:
    remote = run("config", "--base-url", "http://api.example")
    assert remote.returncode == 0 and "--allow-http" in remote.stderr
    local = run("config", "--base-url", "http://127.0.0.1:8080")
    assert local.returncode == 0 and "--allow-http" not in local.stderr


def test_the_table_is_in_words_and_never_shows_the_key(run: Run) -> None:
    empty = run("config")
    assert empty.returncode == 0, empty.stderr
    lines = empty.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["setting", "value", "from"])
    table = lines[header:]
    assert len(table) == 7
    for column in (table[0].index("value"), table[0].index("from")):  # aligned columns
        assert all(line[column - 1] == " " != line[column] for line in table), table
    assert row(empty.stdout, "api_key") == ["api_key", "not", "set", "default"]
    assert row(empty.stdout, "base_url") == ["base_url", contract.DEFAULT_BASE_URL, "default"]
    for text in ("None", "False", "True"):
        assert text not in empty.stdout
    stored = run("config", "--api-key", KEY, "--daily-budget", "0.5")
    assert KEY not in stored.stdout + stored.stderr
    assert row(stored.stdout, "api_key") == ["api_key", "set", "file"]
    assert row(stored.stdout, "daily_budget_usd")[-1] == "file"
    expected = ["confirm_above_usd", "$1.00", "a", "run", "default"]
    assert row(stored.stdout, "confirm_above_usd") == expected
    from_env = run("config", "--json", env={"RUNAPI_API_KEY": "sk-env-OTHER-1234"})
    assert "sk-env-OTHER-1234" not in from_env.stdout + from_env.stderr
    assert KEY not in from_env.stdout + from_env.stderr
    assert json.loads(from_env.stdout)["settings"]["api_key"] == {
        "set": True,
        "from": "environment",
    }


def test_json_is_one_object_with_each_setting_and_its_source(
    run: Run, cli_env: dict[str, str]
) -> None:
    assert (
        run("config", "--daily-budget", "0.25", "--base-url", "https://x.example").returncode == 0
    )
    done = run("config", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown == {
        "path": cli_env["FLUXCLAW_CONFIG"],
        "settings": {
            "api_key": {"set": False, "from": "default"},
            "base_url": {"value": "https://x.example", "from": "file"},
            "daily_budget_usd": {"value": 0.25, "from": "file"},
            "confirm_above_usd": {"value": 1.0, "from": "default"},
            "c2pa_cert": {"value": None, "from": "default"},
            "c2pa_key": {"value": None, "from": "default"},
        },
    }


def test_signing_paths_must_be_readable_files_and_are_stored_absolute(
    run: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = Path(cli_env["FLUXCLAW_CONFIG"])
    missing = run("config", "--c2pa-cert", "missing.pem", "--c2pa-key", "missing-key.pem")
    assert missing.returncode == contract.EXIT_INVALID
    line = one_line_error(missing.stderr)
    assert "--c2pa-cert" in line and str(tmp_path / "work" / "missing.pem") in line
    assert not config.exists()
    folder = run("config", "--c2pa-cert", str(tmp_path))
    assert folder.returncode == contract.EXIT_INVALID and "not a file" in folder.stderr
    (tmp_path / "work" / "chain.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "work" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    done = run("config", "--c2pa-cert", "chain.pem", "--c2pa-key", "key.pem", "--json")
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)["settings"]
    assert settings["c2pa_cert"] == {"value": str(tmp_path / "work" / "chain.pem"), "from": "file"}
    assert json.loads(config.read_text())["c2pa_key"] == str(tmp_path / "work" / "key.pem")


def test_the_key_from_stdin_and_no_value_without_a_terminal(
    run: Run, cli_env: dict[str, str]
) -> None:
    config = Path(cli_env["FLUXCLAW_CONFIG"])
    assert run("config", "--api-key", "-", input=f"{KEY}\n").returncode == 0
    assert json.loads(config.read_text())["api_key"] == KEY
    empty = run("config", "--api-key", "-", input="")
    assert empty.returncode == contract.EXIT_INVALID and "stdin" in one_line_error(empty.stderr)
    bare = run("config", "--api-key", input="")
    assert bare.returncode == contract.EXIT_INVALID and "--api-key -" in bare.stderr
    assert json.loads(config.read_text())["api_key"] == KEY


def test_a_bare_api_key_asks_at_a_terminal_without_echo(cli_env: dict[str, str]) -> None:
    pid, terminal = pty.fork()
    if pid == 0:  # the child: fluxclaw on a terminal of its own
        os.execve(FLUXCLAW, [FLUXCLAW, "config", "--api-key", "--json"], cli_env)
    seen = read_until(terminal, b"RunAPI key")
    os.write(terminal, f"{KEY}\n".encode())
    seen += read_until(terminal, b"}")
    seen += read_until(terminal, b"\x00")  # to the end: closing first could hang it up
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert KEY.encode() not in seen
    assert json.loads(Path(cli_env["FLUXCLAW_CONFIG"]).read_text())["api_key"] == KEY


def row(stdout: str, name: str) -> list[str]:
    """One table row, split into its words."""
    return next(line.split() for line in stdout.splitlines() if line.split()[:1] == [name])
