"""`fluxclaw price`, `history` on an empty database, `--version`, and usage errors."""

from __future__ import annotations

import json

from fluxclaw import contract
from fluxclaw._version import __version__

from .conftest import Run, one_line_error


def test_price_table_lists_every_family(run: Run) -> None:
    done = run("price")
    assert done.returncode == 0
    assert "$0.05" in done.stdout and "$0.07" in done.stdout  # Pro 1k / 2k
    assert "$0.14" in done.stdout and "$0.24" in done.stdout  # Flex 1k / 2k
    assert "unknown" in done.stdout  # Max: never guessed


def test_price_estimate_json(run: Run) -> None:
    done = run("price", "-m", "flex", "-r", "2k", "-n", "10", "--json")
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["total_usd"] == 2.40
    assert data["unit_usd"] == contract.price_cents("flex", "2k") / 100  # type: ignore[operator]


def test_price_of_max_is_unknown(run: Run) -> None:
    data = json.loads(run("price", "-m", "max", "--json").stdout)
    assert data["unit_usd"] is None and data["total_usd"] is None


def test_unknown_model_is_a_one_line_usage_error(run: Run) -> None:
    done = run("price", "-m", "ultra")
    assert done.returncode == contract.EXIT_INVALID
    assert "ultra" in one_line_error(done.stderr)


def test_unknown_option_exits_4_not_2(run: Run) -> None:
    done = run("price", "--bogus")
    assert done.returncode == contract.EXIT_INVALID
    assert "--bogus" in one_line_error(done.stderr)


def test_version(run: Run) -> None:
    done = run("--version")
    assert done.returncode == 0 and __version__ in done.stdout


def test_empty_history(run: Run) -> None:
    done = run("history", "--json")
    assert done.returncode == 0 and done.stdout == ""
