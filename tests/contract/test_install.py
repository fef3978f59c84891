"""A plain `pip install fluxclaw` is the library and the CLI: no server libraries, no MCP SDK,
under 100 MB, and every door that needs an extra says which. Installed offline from the wheels
`make test` builds (.wheels), the way a user's machine would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / ".wheels"
HEAVY = ("uvicorn", "starlette", "uvloop", "watchfiles", "mcp", "rich")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not list(WHEELS.glob("fluxclaw-*.whl")):
        pytest.fail(f"no wheels in {WHEELS}: `make test` builds them", pytrace=False)
    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index"]
    done = subprocess.run(
        [*install, "--find-links", str(WHEELS), "fluxclaw"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return venv


def test_a_plain_install_is_light_and_has_no_server_libraries(plain: Path) -> None:
    probe = (
        "import importlib.util, fluxclaw; fluxclaw.Client; fluxclaw.AsyncClient; "
        "fluxclaw.CallbackServer; "
        f"print([m for m in {HEAVY!r} if importlib.util.find_spec(m)])"
    )
    found = subprocess.run(
        [str(plain / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"
    size = sum(f.stat().st_size for f in (plain / "lib").rglob("*") if f.is_file())
    assert size < 100 * 1024 * 1024, f"{size / 2**20:.0f} MB"


def test_a_door_that_needs_an_extra_says_which(plain: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "FLUXCLAW_DATA_DIR": str(tmp_path)}
    env["FLUXCLAW_CONFIG"] = str(tmp_path / "config.json")
    fluxclaw = str(plain / "bin" / "fluxclaw")
    for args, extra in (
        (["generate", "--sandbox", "a plain install"], "fluxclaw[sandbox]"),
        (["sandbox"], "fluxclaw[sandbox]"),
        (["mcp"], "fluxclaw[mcp]"),
    ):
        done = subprocess.run(
            [fluxclaw, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
        )
        assert done.returncode != 0 and extra in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert subprocess.run([fluxclaw, "--help"], capture_output=True, timeout=60).returncode == 0


def test_the_pytest_plugin_loads_without_the_sandbox_libraries() -> None:
    probe = (
        "import sys, fluxclaw.sandbox.pytest_plugin; "
        "print(sorted(m for m in ('uvicorn', 'starlette') if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stderr


def test_installed_as_a_tool_it_generates_with_its_own_sandbox(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """What `pipx install 'fluxclaw[sandbox]'` or `uv tool install` gives: a virtual environment
    of its own with the extra, and a `fluxclaw` that makes an image offline at no cost."""
    if not list(WHEELS.glob("fluxclaw-*.whl")):
        pytest.fail(f"no wheels in {WHEELS}: `make test` builds them", pytrace=False)
    tool = tmp_path / "tool"
    subprocess.run([sys.executable, "-m", "venv", str(tool)], check=True, timeout=120)
    done = subprocess.run(
        [
            *(str(tool / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index"),
            *("--find-links", str(WHEELS), "fluxclaw[sandbox]"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    made = subprocess.run(
        [str(tool / "bin" / "fluxclaw"), "generate", "--sandbox", "a lamp on a desk", "-o", "out/"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    [saved] = (tmp_path / "out").glob("*.png")
    assert made.stdout.split() == [str(saved)] and "sandbox:" in made.stderr
