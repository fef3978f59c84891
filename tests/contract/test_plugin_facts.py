"""The OpenClaw provider plugin states a few contract facts in JavaScript (it runs before any
Python does); each is read from its source and checked against `fluxclaw.contract`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fluxclaw import contract

PLUGIN = Path(__file__).parents[2] / "openclaw" / "plugin"
SOURCE = (PLUGIN / "index.js").read_text()


def _const(name: str) -> object:
    """A `const NAME = <JSON-like literal>;` from index.js."""
    found = re.search(rf"^const {name} = (.+?);$", SOURCE, re.M | re.S)
    assert found, f"{name} is missing from index.js"
    literal = found.group(1)
    if literal.startswith("{"):  # JavaScript object keys may be bare
        literal = re.sub(r'([{,]\s*)"?([\w-]+)"?\s*:', r'\1"\2":', literal)
    return json.loads(literal)


def test_models_are_the_contract_families() -> None:
    models = _const("MODELS")
    assert models == {f"flux-2-{family}": family for family in contract.FAMILIES}
    assert _const("DEFAULT_MODEL") == f"flux-2-{contract.DEFAULT_FAMILY}"


def test_ratios_resolutions_and_sources_match() -> None:
    assert _const("ASPECT_RATIOS") == list(contract.ASPECT_RATIOS)
    resolutions = _const("RESOLUTIONS")
    assert isinstance(resolutions, dict)
    assert list(resolutions.values()) == list(contract.RESOLUTIONS)
    by_model = _const("RESOLUTIONS_BY_MODEL")
    assert isinstance(by_model, dict)
    for family in contract.FAMILIES:
        allowed = by_model.get(f"flux-2-{family}", list(resolutions))
        assert [resolutions[r] for r in allowed] == list(contract.resolutions_for(family))
    inputs = _const("MAX_INPUT_IMAGES")
    assert inputs == {
        f"flux-2-{family}": contract.FAMILY_RULES[family].max_sources
        for family in contract.FAMILIES
    }
    assert _const("DEFAULT_BASE_URL") == contract.DEFAULT_BASE_URL


def test_the_exit_codes_it_reads_are_the_contracts() -> None:
    codes = _const("EXIT_CODES")
    assert isinstance(codes, dict) and codes
    for name, code in codes.items():
        assert getattr(contract, f"EXIT_{name.upper()}") == code
    # No exit code written as a bare number anywhere else in the plugin.
    assert not re.search(r"exit_code\s*===?\s*\d", SOURCE)


def test_the_manifest_declares_the_provider_and_its_key() -> None:
    manifest = json.loads((PLUGIN / "openclaw.plugin.json").read_text())
    assert manifest["id"] == "runapi"
    assert manifest["contracts"]["imageGenerationProviders"] == ["runapi"]
    assert manifest["setup"]["providers"] == [{"id": "runapi", "envVars": ["RUNAPI_API_KEY"]}]
    package = json.loads((PLUGIN / "package.json").read_text())
    assert package["type"] == "module" and package["openclaw"]["extensions"] == ["./index.js"]
