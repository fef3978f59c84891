"""Every contract fact a user or an agent reads agrees with `fluxclaw.contract`.

The OpenClaw skill, the MCP tool descriptions, the CLI help, `fluxclaw price` and docs/contract.md
restate models, ratios, resolutions, limits, defaults, prices and exit codes in prose. Prose is
not derived from the contract, so this reads each text, pulls out every such fact it can
recognise, and checks it against the contract: a wrong fact fails here, not in front of a user.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from fluxclaw import contract

ROOT = Path(__file__).resolve().parents[2]
SKILL = ROOT / "openclaw" / "skills" / "fluxclaw" / "SKILL.md"
DOC = ROOT / "docs" / "contract.md"
FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
HELP_COMMANDS = ("generate", "remix", "price", "wait", "status", "resume", "mcp", "sandbox")

MODEL_ID = re.compile(r"\bflux-2(?:-[a-z0-9]+)+", re.I)
RATIO = re.compile(r"(?<![\w:.])(\d+):(\d+)(?![\w:])")
RESOLUTION = re.compile(r"(?<![\w.$])(\d+k)\b")
FAMILY = re.compile(r"\b(pro|flex|max)\b", re.I)
DOLLARS = re.compile(r"\$(\d+(?:\.\d+)?)(?:\s*\((\d+k)\))?")
ONLY = re.compile(r"\b(\d+k) only\b")
DEFAULT_AFTER = re.compile(r"\bdefault[:\s]+`?([\w:.]+)")
DEFAULT_BEFORE = re.compile(r"`?([\w:.]+)`?\s*\(default\s*[,)]")
PROMPT_SPAN = re.compile(r"\b(\d+) to (\d+) characters")
SOURCE_SPAN = re.compile(r"\b(?:up to|(\d+) to) (\d+)\b")
EXACTLY = re.compile(r"\bexactly (\d+)\b")
SECONDS_SPAN = re.compile(r"\btakes (\d+) to (\d+) s\b")
UNKNOWN_PRICE = re.compile(r"^\W*(?:\w+\s+)?(unknown|not published|publishes no price)", re.I)
EXIT_ITEM = re.compile(r"(\d+):\s*(.+?)(?=;\s*\d+:|\.\s|\.$|$)")
EXIT_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(.*?)\s*\|\s*$", re.M)
# What an exit code is said to mean -> the contract's code for it (first match wins).
EXIT_MEANINGS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"\bok\b"), contract.EXIT_OK),
    (re.compile(r"\b(key|auth)\b"), contract.EXIT_AUTH),
    (re.compile(r"\bcredits\b"), contract.EXIT_CREDITS),
    (re.compile(r"\b(invalid|validation)\b"), contract.EXIT_INVALID),
    (re.compile(r"\b(timed out|timeout)\b"), contract.EXIT_TIMEOUT),
    (re.compile(r"\brate limit"), contract.EXIT_RATE_LIMITED),
    (re.compile(r"\b(budget|spending cap)\b"), contract.EXIT_BUDGET),
    (re.compile(r"\b(failed|refused)\b"), contract.EXIT_TASK_FAILED),
    (re.compile(r"\b(anything else|other)\b"), contract.EXIT_OTHER),
)


@dataclass(frozen=True)
class Fact:
    kind: str  # model, ratio, resolution, rule, default, limit, price, exit code
    said: str
    problem: str | None  # None: the contract agrees


@dataclass(frozen=True)
class Text:
    """One text to check; `field` names the request field it describes, if only one."""

    where: str
    body: str
    field: str | None = None


# -- reading facts -------------------------------------------------------------------------------


def units(body: str) -> Iterator[str]:
    """Sentences, and table rows one by one, with whitespace collapsed: the scope of a fact."""
    for block in re.split(r"\n\s*\n", body):
        if block.lstrip().startswith("|"):
            yield from (line.strip() for line in block.splitlines() if line.strip())
            continue
        flat = " ".join(block.split())
        yield from (s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`(-])", flat) if s)


def family_before(unit: str, end: int) -> tuple[contract.Family, int] | None:
    """The family named last before `end`, and where its name ends."""
    found = list(FAMILY.finditer(unit, 0, end))
    if not found:
        return None
    return as_family(found[-1].group(1)), found[-1].end()


def as_family(name: str) -> contract.Family:
    assert name.lower() in contract.FAMILIES
    return cast(contract.Family, name.lower())


def accepted(model_id: str) -> bool:
    for action in contract.ACTIONS:
        try:
            contract.resolve_model(model_id, action)
            return True
        except ValueError:
            pass
    return False


def default_of(value: str) -> tuple[str, str] | None:
    """Which contract default a stated default value is about, and the contract's value."""
    value = value.strip("`.").lower()
    if RATIO.fullmatch(value) or value == contract.AUTO_RATIO:
        return "aspect_ratio", contract.DEFAULT_ASPECT_RATIO
    if re.fullmatch(r"\d+k", value):
        return "resolution", contract.DEFAULT_RESOLUTION
    if value in contract.FAMILIES:
        return "model", contract.DEFAULT_FAMILY
    return None


FIELD_DEFAULTS = {
    "aspect_ratio": contract.DEFAULT_ASPECT_RATIO,
    "resolution": contract.DEFAULT_RESOLUTION,
    "model": contract.DEFAULT_FAMILY,
}


def unit_facts(unit: str, field: str | None) -> Iterator[Fact]:
    for m in MODEL_ID.finditer(unit):
        ok = accepted(m.group(0))
        yield Fact("model", m.group(0), None if ok else "resolve_model accepts it for no action")

    ratios = {f"{a}:{b}" for a, b in RATIO.findall(unit)}
    for ratio in sorted(ratios):
        bad = ratio not in contract.ASPECT_RATIOS
        yield Fact("ratio", ratio, "not in ASPECT_RATIOS" if bad else None)
    if len(ratios) >= 3 and ratios <= set(contract.ASPECT_RATIOS):
        missing = set(contract.ASPECT_RATIOS) - ratios
        problem = f"a list of ratios without {sorted(missing)}" if missing else None
        yield Fact("ratio", "the list of ratios", problem)
    if re.search(rf"\b{contract.AUTO_RATIO}\b", unit) and field == "aspect_ratio":
        ok = contract.AUTO_RATIO in contract.ratios_for("remix_image")
        yield Fact("ratio", contract.AUTO_RATIO, None if ok else "no family takes auto")

    resolutions = set(RESOLUTION.findall(unit))
    for res in sorted(resolutions):
        bad = res not in contract.RESOLUTIONS
        yield Fact("resolution", res, "not in RESOLUTIONS" if bad else None)
    if len(resolutions) >= 2 and resolutions != set(contract.RESOLUTIONS):
        yield Fact("resolution", "the list of resolutions", f"is not {contract.RESOLUTIONS}")

    for m in ONLY.finditer(unit):
        named = family_before(unit, m.start())
        if named is None:
            yield Fact("rule", m.group(0), "no family named before it")
            continue
        allowed = contract.resolutions_for(named[0])
        problem = None if allowed == (m.group(1),) else f"{named[0]} takes {allowed}"
        yield Fact("rule", f"{named[0]}: {m.group(0)}", problem)

    yield from default_facts(unit, field)
    yield from limit_facts(unit)
    yield from price_facts(unit)


def default_facts(unit: str, field: str | None) -> Iterator[Fact]:
    for pattern in (DEFAULT_AFTER, DEFAULT_BEFORE):
        for m in pattern.finditer(unit):
            said = m.group(1)
            about = default_of(said)
            if about is None and field in FIELD_DEFAULTS:
                about = field, FIELD_DEFAULTS[field]
            if about is None:
                continue  # the default of something else (a folder, a timeout)
            ok = said.strip("`.").lower() == about[1]
            yield Fact("default", f"{about[0]}={said}", None if ok else f"default is {about[1]}")


def limit_facts(unit: str) -> Iterator[Fact]:
    for m in PROMPT_SPAN.finditer(unit):
        span = (int(m.group(1)), int(m.group(2)))
        ok = span == (contract.PROMPT_MIN, contract.PROMPT_MAX)
        yield Fact("limit", m.group(0), None if ok else "not PROMPT_MIN to PROMPT_MAX")
    if re.search(r"\bsources?\b|source_image_urls|-i\b", unit, re.I):
        for m in SOURCE_SPAN.finditer(unit):
            low, high = int(m.group(1) or 1), int(m.group(2))
            ok = (low, high) == (1, contract.MAX_SOURCES)
            yield Fact(
                "limit", m.group(0), None if ok else f"sources are 1 to {contract.MAX_SOURCES}"
            )
        for m in EXACTLY.finditer(unit):
            named = family_before(unit, m.start())
            families = (named[0],) if named else contract.FAMILIES
            ok = any(contract.FAMILY_RULES[f].max_sources == int(m.group(1)) for f in families)
            yield Fact("limit", m.group(0), None if ok else f"not the sources {families} take")
    for m in SECONDS_SPAN.finditer(unit):
        low, high = int(m.group(1)), int(m.group(2))
        typical = [
            contract.typical_seconds(f, r) for f in contract.FAMILIES for r in contract.RESOLUTIONS
        ]
        ok = all(low <= t <= high for t in typical)
        yield Fact("limit", m.group(0), None if ok else f"typical times are {typical}")


def price_facts(unit: str) -> Iterator[Fact]:
    """`$X` after a family name is that family's price; `(1k)` or its place says which one."""
    amounts = list(DOLLARS.finditer(unit))
    seen: dict[int, int] = {}  # where a family name ends -> amounts after it so far
    for m in amounts:
        named = family_before(unit, m.start())
        if named is None:
            continue  # a budget ("more than about $1"), not a price per image
        family, at = named
        place = seen.get(at, 0)
        seen[at] = place + 1
        res = m.group(2) or (
            contract.RESOLUTIONS[place] if place < len(contract.RESOLUTIONS) else "?"
        )
        cents = round(float(m.group(1)) * 100)
        want = contract.price_cents(family, res)
        if want is None:
            problem: str | None = f"the contract has no {family} {res} price"
        else:
            problem = None if cents == want else f"the contract says {want} cents"
        yield Fact("price", f"{family} {res} ${m.group(1)}", problem)
    if not amounts:
        return
    said_unknown: dict[
        contract.Family, bool
    ] = {}  # a family without prices, named here -> said so once
    for m in FAMILY.finditer(unit):
        family = as_family(m.group(1))
        if all(contract.price_cents(family, r) is None for r in contract.RESOLUTIONS):
            told = bool(UNKNOWN_PRICE.search(unit[m.end() : m.end() + 40]))
            said_unknown[family] = said_unknown.get(family, False) or told
    for family, told in said_unknown.items():
        yield Fact("price", f"{family} unknown", None if told else "its price is unknown: say so")


def exit_code_facts(body: str) -> Iterator[Fact]:
    """`Exit code 2: ...; 3: ...` sentences and `| 2 | ... |` tables after "Exit codes"."""
    for start in re.finditer(r"Exit codes?\b", body):
        rest = body[start.end() :]
        paragraph, _, after = rest.partition("\n\n")
        items = list(EXIT_ITEM.finditer(" ".join(paragraph.split())))
        table = re.match(r"\s*((?:\|.*(?:\n|$))+)", after)
        rows = list(EXIT_ROW.finditer(table.group(1))) if table else []
        for m in [*items, *rows]:
            code, meaning = int(m.group(1)), m.group(2).lower()
            if not meaning or set(meaning) <= set("-: "):
                continue  # a table's header rule
            want = next((c for p, c in EXIT_MEANINGS if p.search(meaning)), None)
            problem = None if want == code else f"the contract's code for it is {want}"
            yield Fact("exit code", f"{code}: {meaning[:40]}", problem)


def facts(text: Text) -> list[Fact]:
    found = [f for unit in units(text.body) for f in unit_facts(unit, text.field)]
    return found + list(exit_code_facts(text.body))


def wrong(texts: list[Text]) -> list[str]:
    return [
        f"{text.where}: {fact.kind} {fact.said!r}: {fact.problem}"
        for text in texts
        for fact in facts(text)
        if fact.problem
    ]


# -- the texts -----------------------------------------------------------------------------------


def skill_texts() -> list[Text]:
    return [Text("SKILL.md", SKILL.read_text(encoding="utf-8"))]


def doc_texts() -> list[Text]:
    return [Text("docs/contract.md", DOC.read_text(encoding="utf-8"))]


def mcp_texts() -> list[Text]:
    """The server's instructions, each tool's description, and each argument's description and
    default, from the server built in-process (no request is made)."""
    import fluxclaw
    from fluxclaw.mcp_server import FluxclawTools, build_server

    async def listed() -> list[Text]:
        client = fluxclaw.AsyncClient(api_key="x", base_url="http://127.0.0.1:9")
        try:
            server = build_server(FluxclawTools(client, Path("unused")))
            out = [Text("mcp instructions", server.instructions or "")]
            for tool in await server.list_tools():
                out.append(Text(f"mcp {tool.name}", tool.description or ""))
                props: dict[str, Any] = tool.input_schema.get("properties", {})
                for name, prop in props.items():
                    where = f"mcp {tool.name}.{name}"
                    out.append(Text(where, str(prop.get("description", "")), field=name))
                    if "default" in prop and prop["default"] is not None:
                        said = f"(default {prop['default']})"
                        out.append(Text(f"{where} schema", said, field=name))
            return out
        finally:
            await client.aclose()

    return asyncio.run(listed())


def cli_texts() -> list[Text]:
    """`fluxclaw CMD --help` for each command, and the price table `fluxclaw price` prints."""
    runs = [(f"fluxclaw {cmd} --help", [cmd, "--help"]) for cmd in HELP_COMMANDS]
    runs.append(("fluxclaw price", ["price"]))
    env = {**os.environ, "NO_COLOR": "1"}

    def run(args: list[str]) -> str:
        done = subprocess.run(
            [FLUXCLAW, *args], capture_output=True, text=True, timeout=60, env=env, check=True
        )
        # Help is wrapped at 80 columns, and the wrapper may break after a hyphen: undo that.
        return re.sub(r"(?<=\w-)\n\s+", "", done.stdout)

    with ThreadPoolExecutor(len(runs)) as pool:
        outputs = list(pool.map(run, [args for _, args in runs]))
    return [Text(where, out) for (where, _), out in zip(runs, outputs, strict=True)]


SOURCES = {"skill": skill_texts, "docs": doc_texts, "mcp": mcp_texts, "cli": cli_texts}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def texts(request: pytest.FixtureRequest) -> list[Text]:
    return SOURCES[request.param]()


# -- the checks ----------------------------------------------------------------------------------


def test_every_fact_agrees_with_the_contract(texts: list[Text]) -> None:
    found = [fact for text in texts for fact in facts(text)]
    assert found, "no fact recognised at all: the reader is broken"
    problems = wrong(texts)
    assert not problems, "\n".join(["facts the contract contradicts:", *problems])


def test_the_skill_states_the_facts_an_agent_needs() -> None:
    """The skill must keep naming prices, ratios and Max's limits, not just avoid wrong ones."""
    kinds = {(fact.kind, fact.said) for fact in facts(skill_texts()[0])}
    assert ("ratio", "the list of ratios") in kinds
    assert {("price", "pro 1k $0.05"), ("price", "flex 2k $0.24")} <= kinds
    assert ("price", "max unknown") in kinds
    assert ("rule", "max: 1k only") in kinds


def test_the_contract_agrees_with_itself() -> None:
    """Per-family rules stay within the shared tables, and every price has a resolution."""
    for family, rules in contract.FAMILY_RULES.items():
        assert set(rules.resolutions) <= set(contract.RESOLUTIONS)
        assert 1 <= rules.max_sources <= contract.MAX_SOURCES
        assert contract.DEFAULT_RESOLUTION in rules.resolutions
        table = contract.PRICES_CENTS[family]
        assert table is None or set(table) == set(rules.resolutions)
    assert max(r.max_sources for r in contract.FAMILY_RULES.values()) == contract.MAX_SOURCES
    assert contract.DEFAULT_FAMILY in contract.FAMILIES
    assert contract.DEFAULT_ASPECT_RATIO in contract.ASPECT_RATIOS


@pytest.mark.parametrize(
    ("said", "field"),
    [
        ("Pro $0.06 (1k) / $0.07 (2k), Flex $0.14 / $0.24, Max not published.", None),
        ("Pro $0.05 (1k) / $0.07 (2k), Flex $0.14 / $0.24, Max $0.20.", None),
        ("Prices: Pro $0.05, Flex $0.14, Max $0.16.", None),
        ("a full model id such as flux-2-mega.", None),
        ("Use flux-2-ultra-text-to-image for the best results.", None),
        ("Aspect ratio: 1:1, 4:3, 3:4, 16:9, 9:16, 3:2 (default 1:1).", None),
        ("`-a` aspect ratio: `1:1 5:4 3:4`.", None),
        ("`-r` resolution: `1k` (default), `2k` or `4k`.", None),
        ("`-m flex` (higher fidelity, 1k only).", None),
        ("What to draw (3 to 4000 characters).", None),
        ("Source images (1 to 10): http(s) URLs or local file paths.", None),
        ("pass it with `-i` (repeat `-i` for up to 9 sources).", None),
        ("Pro takes exactly 1 source.", None),
        ("Aspect ratio: 1:1 or auto (default: follow the first source image).", "aspect_ratio"),
        ("Output resolution: 1k, 2k (default 2k).", None),
        ("`-m flex` (default, fast, cheapest).", None),
        ("Exit code 2: the key is wrong; 3: timed out.", None),
        ("a generation takes 5 to 12 s", None),
    ],
)
def test_a_wrong_fact_is_caught(said: str, field: str | None) -> None:
    assert wrong([Text("example", said, field)]) != []


def test_right_facts_pass() -> None:
    said = (
        "Prices per image: Pro $0.05 (1k) / $0.07 (2k), Flex $0.14 / $0.24, Max not published. "
        "Ask before runs over about $1 (for example more than 10 Flex images or many 2k images). "
        "`-m max` (best, 1k only). Repeat `-i` for up to 8 sources. Max takes exactly 1 source. "
        "Exit code 2: the key is missing; 3: not enough credits; 4: invalid request."
    )
    assert wrong([Text("example", said)]) == []
