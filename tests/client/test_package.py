"""The public surface: lazy to import, complete, and every error mapped to its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fluxclaw
from fluxclaw import contract, errors


def test_import_is_cheap() -> None:
    code = "import sys, fluxclaw; print(sorted({'httpx', 'pydantic', 'PIL'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve() -> None:
    for name in fluxclaw.__all__:
        assert getattr(fluxclaw, name) is not None
    with pytest.raises(AttributeError):
        _ = fluxclaw.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "cls", "exit_code"),
    [
        (401, errors.AuthenticationError, contract.EXIT_AUTH),
        (402, errors.InsufficientCreditsError, contract.EXIT_CREDITS),
        (422, errors.ValidationError, contract.EXIT_INVALID),
        (404, errors.NotFoundError, contract.EXIT_INVALID),
        (409, errors.ConflictError, contract.EXIT_INVALID),
        (429, errors.RateLimitError, contract.EXIT_RATE_LIMITED),
        (503, errors.ServerError, contract.EXIT_OTHER),
        (408, errors.RequestTimeoutError, contract.EXIT_TIMEOUT),
    ],
)
def test_errors_carry_exit_codes(status: int, cls: type, exit_code: int) -> None:
    assert errors.for_status(status) is cls
    assert cls.exit_code == exit_code
    assert issubclass(cls, fluxclaw.FluxclawError)


def test_task_errors_exit_codes() -> None:
    assert fluxclaw.TaskFailedError.exit_code == contract.EXIT_TASK_FAILED
    assert fluxclaw.TaskTimeoutError.exit_code == contract.EXIT_TIMEOUT
    assert fluxclaw.NetworkError.exit_code == contract.EXIT_OTHER


# What a cold `fluxclaw generate` needs none of (issue 23: its CPU beside the official SDK's):
# pydantic, asyncio, statistics and Pillow (a PNG is checked byte by byte), the C2PA module
# unless signing, and aiohttp (only AsyncClient uses it).
COLD_PATH_SKIPS = ("pydantic", "asyncio", "statistics", "PIL", "aiohttp", "fluxclaw.credentials")


def test_a_cold_generate_loads_only_what_it_uses(
    fluxclaw_sandbox: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        "from fluxclaw.cli.main import main\n"
        "sys.argv = ['fluxclaw', 'generate', 'a ceramic vase on linen', '-o', sys.argv[1]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        f"print(sorted(m for m in {COLD_PATH_SKIPS!r} if m in sys.modules))\n"
    )
    env = cli_env | {
        "RUNAPI_API_KEY": fluxclaw_sandbox.api_key,
        "RUNAPI_BASE_URL": fluxclaw_sandbox.base_url,
    }
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out") + "/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"  # after the saved file's path
    [saved] = (tmp_path / "out").glob("*.png")  # the whole job ran: the image is on disk
    assert saved.read_bytes().startswith(b"\x89PNG")
