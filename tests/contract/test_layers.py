"""The house's rules that the import graph alone cannot state."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fluxclaw"


def test_no_module_outside_the_clients_uses_their_private_parts() -> None:
    # The engine and the doors use the runner interface (`client.core`, `client.run_flow`).
    private = re.compile(r"\b(?:client|self\.client|planner)\._[a-z]\w*")
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "client.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if private.search(line)
    ]
    assert found == []


def test_the_layer_contract_is_checked_by_make_lint() -> None:
    root = SRC.parents[1]
    assert "lint-imports" in (root / "Makefile").read_text()
    pyproject = (root / "pyproject.toml").read_text()
    assert 'type = "layers"' in pyproject and 'type = "acyclic_siblings"' in pyproject
