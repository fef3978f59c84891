"""The public surface: lazy to import, complete, and every error mapped to its exit code."""

from __future__ import annotations

import subprocess
import sys

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
