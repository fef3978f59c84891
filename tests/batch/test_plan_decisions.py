"""The batch plan's decisions, in process: a row's identity, file name, slot and key, and what a
run would do with it (done, new, changed, unfinished, failed, bad). `plan_batch` sends nothing,
so the client points at a closed loopback port and the ledger is a real SQLite file.

Identities and keys are pinned: ledger rows written by older releases must keep matching the
rows of the same file, or the user pays twice. The expected values are worked out here from the
recipe (or pinned as literals), never by calling the helper under test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import AsyncClient, contract
from fluxclaw.batch.plan import (
    BAD_KEPT,
    KINDS,
    Decision,
    Defaults,
    Drafter,
    Plan,
    Planned,
    plan_batch,
)
from fluxclaw.batch.rows import BadFile, BadRow, Row
from fluxclaw.history import History
from fluxclaw.job_types import Job
from fluxclaw.pricing import PriceList

# At least 16 characters: the check for the key in a row's name is on.
KEY = "sk-plan-decisions-0000"
# The key namespace as released: a changed namespace would re-pay every planned row.
NAMESPACE = uuid.UUID("5b0f6f4e-2d1c-4d7e-9a59-6f1c1c0a7e31")
PRO_T2I = "flux-2-pro-text-to-image"


@pytest.fixture
def client() -> Iterator[AsyncClient]:
    # Its config and data folder are the test's own (tests/conftest.py's _isolated_state).
    found = AsyncClient(api_key=KEY, base_url="http://127.0.0.1:9")  # never sent to
    yield found
    asyncio.run(found.aclose())


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    found = History(tmp_path / "ledger.sqlite")
    yield found
    found.close()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def recipe(
    prompt: str,
    *,
    action: str = "text_to_image",
    model: str = PRO_T2I,
    ratio: str | None = None,
    resolution: str | None = None,
    fmt: str = "png",
    name: str | None = None,
    sources: list[str] | None = None,
) -> str:
    """A row's identity digest as released: what it asks for, as JSON, hashed."""
    asked = [action, prompt, model, ratio, resolution, fmt, name, sources or []]
    return hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:24]


def remix_of(*sources: str) -> str:
    """The identity digest of a Pro remix of "the lamp, restyled" from these sources."""
    return recipe(
        "the lamp, restyled",
        action="remix_image",
        model="flux-2-pro-remix-image",
        sources=list(sources),
    )


def key_for(batch: Path | str, identity: str, failures: int = 0) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{batch}\n{identity}\n{failures}"))


def slot_of(prompt: str, number: int) -> str:
    return f"p-{hashlib.sha256(prompt.encode()).hexdigest()[:12]}.{number}"


def planned(plan: Plan, history: History) -> list[Planned | BadRow]:
    return list(plan.each(history))


def good(plan: Plan, history: History) -> list[Planned]:
    found = planned(plan, history)
    assert all(isinstance(item, Planned) for item in found), found
    return [item for item in found if isinstance(item, Planned)]


def png(path: Path, colour: tuple[int, int, int] = (255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def ledger_row(
    history: History,
    out: Path,
    identity: str | None,
    status: str,
    *,
    key: str | None = None,
    paths: list[str] | None = None,
    slot: str | None = None,
    task_id: str | None = None,
    prompt: str = "a red lamp",
) -> int:
    row = history.start(
        action="text_to_image",
        model=PRO_T2I,
        prompt=prompt,
        params={},
        idempotency_key=key,
        base_url=None,
        job={"slot": slot} if slot else None,
        task_id=task_id,
        batch=str(out) if identity is not None else None,
        identity=identity,
    )
    history.update(row, status=status, paths=paths)
    return row


# ---------------------------------------------------------------------------------------------
# Identity


def test_a_rows_identity_is_the_released_hash_of_what_it_asks_for(
    client: AsyncClient, history: History, out: Path
) -> None:
    # Pinned literally: the digest a row of this release and of the ones before it has.
    assert recipe("a red lamp") == "ea39efc425aa3b8c49289fad"
    [item] = good(plan_batch(client, [Row(1, "a red lamp")], out, history), history)
    assert item.job.identity == "ea39efc425aa3b8c49289fad.0"
    full = Row(
        7, "a blue lamp", "flex", "16:9", "2k", name="lamp.webp", format="webp"
    )  # every field asked
    [item] = good(plan_batch(client, [full], out, history), history)
    expected = recipe(
        "a blue lamp",
        model="flux-2-flex-text-to-image",
        ratio="16:9",
        resolution="2k",
        fmt="webp",
        name="lamp.webp",
    )
    assert item.job.identity == f"{expected}.0"


def test_line_numbers_comments_and_order_do_not_change_an_identity(
    client: AsyncClient, history: History, out: Path
) -> None:
    first = [Row(1, "a red lamp"), Row(2, "a blue lamp", name="blue")]
    moved: list[Row | BadRow] = [
        Row(40, "a blue lamp", name="blue"),
        BadRow(41, "x"),
        Row(97, "a red lamp"),
    ]
    before = {
        p.row.prompt: (p.job.identity, p.job.stem, p.job.idempotency_key, p.job.slot)
        for p in good(plan_batch(client, first, out, history), history)
    }
    after = {
        p.row.prompt: (p.job.identity, p.job.stem, p.job.idempotency_key, p.job.slot)
        for p in planned(plan_batch(client, moved, out, history), history)
        if isinstance(p, Planned)
    }
    assert before == after
    assert before["a red lamp"][0] == recipe("a red lamp") + ".0"
    assert before["a blue lamp"][0] == recipe("a blue lamp", name="blue") + ".0"


@pytest.mark.parametrize(
    ("changed", "asked"),
    [
        (Row(1, "a red lamp at dusk"), {"prompt": "a red lamp at dusk"}),
        (Row(1, "a red lamp", model="flex"), {"model": "flux-2-flex-text-to-image"}),
        (Row(1, "a red lamp", aspect_ratio="4:3"), {"ratio": "4:3"}),
        (Row(1, "a red lamp", resolution="2k"), {"resolution": "2k"}),
        (Row(1, "a red lamp", format="jpeg"), {"fmt": "jpeg"}),
        (Row(1, "a red lamp", name="lamp"), {"name": "lamp"}),
    ],
)
def test_each_asked_field_changes_the_identity(
    client: AsyncClient, history: History, out: Path, changed: Row, asked: dict[str, Any]
) -> None:
    plan = plan_batch(client, [Row(1, "a red lamp"), changed], out, history)
    first, second = good(plan, history)
    assert first.job.identity == recipe("a red lamp") + ".0"
    assert second.job.identity == recipe(**{"prompt": "a red lamp", **asked}) + ".0"
    assert second.job.identity != first.job.identity


def test_a_model_is_identified_by_its_id_however_it_is_spelt(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(1, "a red lamp", model="flux-2-pro"), Row(2, "a red lamp", model="PRO")]
    items = good(plan_batch(client, rows, out, history), history)
    digest = recipe("a red lamp")
    assert [p.job.identity for p in items] == [f"{digest}.0", f"{digest}.1"]


def test_png_asked_and_as_served_are_one_identity_as_when_png_was_the_default(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(1, "a red lamp"), Row(2, "a red lamp", format="png")]
    items = good(plan_batch(client, rows, out, history), history)
    digest = recipe("a red lamp")
    assert [p.job.identity for p in items] == [f"{digest}.0", f"{digest}.1"]
    assert [p.job.format for p in items] == [None, "png"]


def test_local_sources_are_identified_by_their_bytes_not_their_path(
    client: AsyncClient, history: History, out: Path, tmp_path: Path
) -> None:
    red = png(tmp_path / "src" / "red.png")
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    copy.write_bytes(red.read_bytes())
    blue = png(tmp_path / "src" / "blue.png", (0, 0, 255))
    url = "https://images.example.com/lamp.png"
    rows = [
        Row(1, "the lamp, restyled", images=(str(red),)),
        Row(2, "the lamp, restyled", images=(str(copy),)),
        Row(3, "the lamp, restyled", images=(str(blue),)),
        Row(4, "the lamp, restyled", images=(url,)),
        Row(5, "the lamp, restyled", images=(str(red), url)),
        Row(6, "the lamp, restyled", images=(url, str(blue))),
    ]
    items = good(plan_batch(client, rows, out, history), history)
    red_hash = "sha256:" + hashlib.sha256(red.read_bytes()).hexdigest()
    blue_hash = "sha256:" + hashlib.sha256(blue.read_bytes()).hexdigest()
    assert [p.job.identity for p in items] == [
        f"{remix_of(red_hash)}.0",
        f"{remix_of(red_hash)}.1",  # the same bytes at another path: the same request again
        f"{remix_of(blue_hash)}.0",
        f"{remix_of(url)}.0",
        f"{remix_of(red_hash, url)}.0",
        f"{remix_of(url, blue_hash)}.0",
    ]
    assert [p.job.action for p in items] == ["remix_image"] * 6
    assert items[0].job.sources == (str(red),)


def test_a_source_is_hashed_once_so_the_run_meets_the_rows_the_plan_decided(
    client: AsyncClient, history: History, out: Path, tmp_path: Path
) -> None:
    red = png(tmp_path / "red.png")
    planned_hash = "sha256:" + hashlib.sha256(red.read_bytes()).hexdigest()
    plan = plan_batch(client, [Row(1, "the lamp, restyled", images=(str(red),))], out, history)
    png(red, (0, 255, 0))  # other bytes, after the plan: the run keeps the planned identity
    [item] = good(plan, history)
    assert item.kind == "new"
    assert item.job.identity == remix_of(planned_hash) + ".0"


def test_relative_sources_are_read_from_sources_from_else_the_current_folder(
    client: AsyncClient,
    history: History,
    out: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    png(tmp_path / "given" / "lamp.png")
    png(tmp_path / "cwd" / "lamp.png", (0, 0, 255))
    rows = [Row(1, "the lamp, restyled", images=("lamp.png",))]
    monkeypatch.chdir(tmp_path / "cwd")
    [given] = good(plan_batch(client, rows, out, history, sources_from=tmp_path / "given"), history)
    [here] = good(plan_batch(client, rows, out, history), history)
    assert given.job.sources == (str(tmp_path / "given" / "lamp.png"),)
    assert here.job.sources == (str(tmp_path / "cwd" / "lamp.png"),)
    monkeypatch.setenv("HOME", str(tmp_path))
    [home] = good(plan_batch(client, rows, out, history, sources_from=Path("~/given")), history)
    assert home.job.sources == (str(tmp_path / "given" / "lamp.png"),)


# ---------------------------------------------------------------------------------------------
# Names, slots and occurrences


def test_identical_rows_are_numbered_and_named_apart(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(1, "A red lamp, on a desk!")] * 3 + [Row(4, "A red lamp, on a desk!", "flex")]
    items = good(plan_batch(client, rows, out, history), history)
    digest = recipe("A red lamp, on a desk!")
    flex = recipe("A red lamp, on a desk!", model="flux-2-flex-text-to-image")
    assert [p.job.identity for p in items] == [
        f"{digest}.0",
        f"{digest}.1",
        f"{digest}.2",
        f"{flex}.0",
    ]
    slug = "a-red-lamp-on-a"  # the prompt's first five words
    assert [p.job.stem for p in items] == [
        f"{slug}-{digest[:8]}",
        f"{slug}-{digest[:8]}-2",
        f"{slug}-{digest[:8]}-3",
        f"{slug}-{flex[:8]}",
    ]
    # Slots count rows of the same prompt, whatever else they ask for.
    assert [p.job.slot for p in items] == [slot_of("A red lamp, on a desk!", n) for n in range(4)]


def test_a_name_is_the_file_stem_and_the_slot(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a red lamp", name="Hero.PNG"),
        Row(2, "a red lamp", name="lamp.v2"),
        Row(3, "a red lamp", name="shot.jpeg"),
        Row(4, "a red lamp"),
        Row(5, "a blue lamp", name="plain"),
        Row(6, "a blue lamp"),
    ]
    items = good(plan_batch(client, rows, out, history), history)
    assert [p.job.stem for p in items][:3] == ["Hero", "lamp.v2", "shot"]
    assert items[4].job.stem == "plain"
    assert [p.job.slot for p in items] == [
        "Hero.PNG",
        "lamp.v2",
        "shot.jpeg",
        slot_of("a red lamp", 3),  # named rows of the same prompt count too
        "plain",
        slot_of("a blue lamp", 1),
    ]
    assert [p.job.format for p in items] == ["png", None, "jpeg", None, None, None]


def test_a_format_comes_from_the_row_then_the_names_suffix_then_the_default(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a red lamp", name="a.jpg", format="webp"),
        Row(2, "a red lamp", name="b.JPG"),
        Row(3, "a red lamp", name="c.v1"),
        Row(4, "a red lamp"),
        Row(5, "a red lamp", format="png"),
    ]
    items = good(plan_batch(client, rows, out, history, defaults=Defaults(format="webp")), history)
    assert [p.job.format for p in items] == ["webp", "jpeg", "webp", "webp", "png"]
    assert [p.job.stem for p in items][:3] == ["a", "b", "c.v1"]
    items = good(plan_batch(client, rows[1:3], out, history), history)
    assert [p.job.format for p in items] == ["jpeg", None]


def test_names_clash_as_saved_case_insensitively_and_as_served(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a jpeg lamp", name="x.jpg"),
        Row(2, "another jpeg lamp", name="X.jpeg"),  # x.jpg again
        Row(3, "a served lamp", name="y"),  # as served: y with any suffix
        Row(4, "a webp lamp", name="y.webp"),
        Row(5, "a webp lamp", name="z.webp"),
        Row(6, "a served lamp", name="z"),
        Row(7, "a png lamp", name="Hero.png"),
        Row(8, "a png lamp", name="hero.PNG"),
        Row(9, "a jpeg lamp", name="hero.jpg"),  # another suffix: no clash
        Row(10, "a lamp", name="q.png"),
        Row(11, "a lamp", name="q.jpg"),
        Row(12, "a served lamp", name="q"),
    ]
    found = planned(plan_batch(client, rows, out, history), history)
    bad = {item.line: item.error for item in found if isinstance(item, BadRow)}
    assert bad == {
        2: "file name x.jpg is already used by line 1",
        4: "file name y* is already used by line 3",
        6: "file name z.webp is already used by line 5",
        8: "file name hero.png is already used by line 7",
        12: "file name q.png is already used by line 10",
    }
    assert [p.row.line for p in found if isinstance(p, Planned)] == [1, 3, 5, 7, 9, 10, 11]


def test_a_clash_with_a_later_row_keeps_the_first_claimant(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a lamp", name="q.webp"),
        Row(2, "a served lamp", name="Q"),
        Row(3, "a served lamp", name="q.JPG"),
    ]
    found = planned(plan_batch(client, rows, out, history), history)
    assert [(i.line, i.error) for i in found if isinstance(i, BadRow)] == [
        (2, "file name q.webp is already used by line 1"),
    ]
    rows = [
        Row(1, "a lamp", name="q"),
        Row(2, "a lamp", name="Q.jpg"),
        Row(3, "a served lamp", name="r"),
        Row(4, "another served lamp", name="R"),
    ]
    found = planned(plan_batch(client, rows, out, history), history)
    assert [(i.line, i.error) for i in found if isinstance(i, BadRow)] == [
        (2, "file name q* is already used by line 1"),
        (4, "file name r* is already used by line 3"),
    ]


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_a_source_that_cannot_be_read_is_a_bad_row_and_the_next_rows_go_on(
    client: AsyncClient, history: History, out: Path
) -> None:
    # A regular file whose read fails (EIO): what a failing disk or a vanished mount does.
    rows = [Row(1, "the lamp, restyled", images=("/proc/self/mem",)), Row(2, "a red lamp")]
    found = planned(plan_batch(client, rows, out, history), history)
    assert found[0] == BadRow(1, "cannot read a source image ([Errno 5] Input/output error)")
    assert isinstance(found[1], Planned) and found[1].row.line == 2


def test_a_name_holding_the_key_is_a_bad_row_and_the_next_rows_go_on(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(1, "a red lamp", name=f"{KEY}.png"), Row(2, "a", name="b"), Row(3, "a lamp")]
    found = planned(plan_batch(client, rows, out, history), history)
    assert found[0] == BadRow(
        1,
        "name holds your RunAPI key; remove it (nothing was sent: the key goes to the API "
        "only in its Authorization header).",
    )
    assert isinstance(found[1], BadRow) and found[1].line == 2
    assert found[1].error == "prompt has 1 characters; it must have 3 to 5000."
    assert isinstance(found[2], Planned) and found[2].row.line == 3


# ---------------------------------------------------------------------------------------------
# Defaults and jobs


def test_row_values_win_over_defaults_and_defaults_fill_the_rest(
    client: AsyncClient, history: History, out: Path
) -> None:
    defaults = Defaults(model="flex", aspect_ratio="3:2", resolution="2k", format="jpeg")
    rows = [Row(1, "a red lamp"), Row(2, "a red lamp", "pro", "4:3", "1k", format="webp")]
    plan = plan_batch(
        client, rows, out, history, defaults=defaults, callback_url="https://hooks.example.com/x"
    )
    first, second = good(plan, history)
    assert (first.job.model, first.job.aspect_ratio, first.job.resolution) == ("flex", "3:2", "2k")
    assert first.job.format == "jpeg"
    assert (second.job.model, second.job.aspect_ratio, second.job.resolution) == (
        "pro",
        "4:3",
        "1k",
    )
    assert (
        first.job.identity
        == recipe(
            "a red lamp",
            model="flux-2-flex-text-to-image",
            ratio="3:2",
            resolution="2k",
            fmt="jpeg",
        )
        + ".0"
    )
    assert first.estimate_cents == 24 and second.estimate_cents == 5
    for item in (first, second):
        assert item.job.output == str(out) + "/"
        assert item.job.callback_url == "https://hooks.example.com/x"
        assert item.job.batch == str(out)
        assert item.job.action == "text_to_image" and item.job.sources == ()
        assert item.job.prompt == "a red lamp"
    bare = good(plan_batch(client, [Row(1, "a red lamp")], out, history), history)[0].job
    assert (bare.model, bare.aspect_ratio, bare.resolution, bare.format) == (
        "pro",
        None,
        None,
        None,
    )
    assert bare.callback_url is None and bare.safety_checker is None


def test_the_safety_checker_default_reaches_only_models_that_have_the_switch(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a red lamp"),
        Row(2, "a red lamp", model="max", aspect_ratio="1:1"),
        Row(3, "a red lamp", model="mega"),
        Row(4, "a blue lamp", model="flex"),
    ]
    plan = plan_batch(client, rows, out, history, defaults=Defaults(safety_checker=False))
    found = planned(plan, history)
    assert isinstance(found[0], Planned) and found[0].job.safety_checker is False
    assert isinstance(found[1], Planned) and found[1].job.safety_checker is None
    assert isinstance(found[2], BadRow) and found[2].line == 3
    assert found[2].error.startswith("model='mega' is not a Flux 2 model")
    assert isinstance(found[3], Planned) and found[3].job.safety_checker is False
    # Not part of the identity: the same row is the same row whichever way it is set.
    assert found[0].job.identity == recipe("a red lamp") + ".0"


def test_a_remix_price_is_the_remix_models(
    client: AsyncClient, history: History, out: Path, tmp_path: Path
) -> None:
    client.core.price_list = PriceList({"flux-2-pro-remix-image": {"1k": 9}})
    red = png(tmp_path / "red.png")
    rows = [Row(1, "the lamp, restyled", images=(str(red),)), Row(2, "a red lamp")]
    plan = plan_batch(client, rows, out, history)
    assert [p.estimate_cents for p in good(plan, history)] == [9, 5]


# ---------------------------------------------------------------------------------------------
# Kinds


def test_each_kind_from_the_ledger(
    client: AsyncClient, history: History, out: Path, tmp_path: Path
) -> None:
    prompts = [f"a lamp number {n}" for n in range(9)]
    rows = [Row(n + 1, prompt) for n, prompt in enumerate(prompts)]
    ids = [recipe(prompt) + ".0" for prompt in prompts]
    saved = png(out / "done.png")
    ledger_row(history, out, ids[0], "completed", key="k-done", paths=[str(saved)])
    ledger_row(history, out, ids[1], "completed", key="k-gone-file", paths=[str(out / "no.png")])
    ledger_row(history, out, ids[2], "completed", key="k-no-paths")
    ledger_row(history, out, ids[3], "failed", key="k-failed")
    ledger_row(history, out, ids[4], "timeout", key="k-timeout")
    ledger_row(history, out, ids[5], "rejected", key="k-rejected")
    ledger_row(history, out, ids[6], "gone", key="k-gone")
    ledger_row(history, out, ids[7], "someday", key="k-unknown")  # a state no release writes
    plan = plan_batch(client, rows, out, history)
    kinds = [plan.decisions[i].kind for i in ids]
    assert kinds == [
        "done",
        "unfinished",  # paid, but its file is gone
        "unfinished",
        "failed",
        "unfinished",
        "new",
        "new",
        "new",
        "new",
    ]
    items = good(plan, history)
    assert [p.kind for p in items] == kinds
    assert [p.job.idempotency_key for p in items] == [
        "k-done",
        "k-gone-file",
        "k-no-paths",
        "k-failed",
        "k-timeout",
        "k-rejected",  # refused before anything was made: the same key again
        "k-gone",
        key_for(out, ids[7]),
        key_for(out, ids[8]),
    ]
    assert [p.entry.idempotency_key if p.entry else None for p in items] == [
        "k-done",
        "k-gone-file",
        "k-no-paths",
        "k-failed",
        "k-timeout",
        None,
        None,
        None,
        None,
    ]
    decisions = [plan.decisions[i] for i in ids]
    assert [d.entry_id is None for d in decisions] == [False] * 5 + [True] * 4
    assert [d.key_id is None for d in decisions] == [True] * 5 + [False, False, True, True]
    assert plan.counts == {"done": 1, "unfinished": 3, "failed": 1, "new": 4, "bad": 0}
    assert plan.runnable == 9


def test_a_rejected_row_without_a_key_gets_a_derived_one(
    client: AsyncClient, history: History, out: Path
) -> None:
    identity = recipe("a red lamp") + ".0"
    ledger_row(history, out, identity, "rejected")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[identity] == Decision("new", None, None, 0, 5)
    [item] = good(plan, history)
    assert item.job.idempotency_key == key_for(out, identity)


def test_an_unfinished_row_without_a_key_gets_a_derived_one(
    client: AsyncClient, history: History, out: Path
) -> None:
    identity = recipe("a red lamp") + ".0"
    row = ledger_row(history, out, identity, "interrupted")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[identity] == Decision("unfinished", row, None, 0, 5)
    [item] = good(plan, history)
    assert item.entry is not None and item.entry.id == row
    assert item.job.idempotency_key == key_for(out, identity)


def test_the_latest_ledger_row_decides_and_failures_are_counted(
    client: AsyncClient, history: History, out: Path
) -> None:
    identity = recipe("a red lamp") + ".0"
    ledger_row(history, out, identity, "failed", key="k1")
    ledger_row(history, out, identity, "failed", key="k2")
    latest = ledger_row(history, out, identity, "timeout", key="k3")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[identity] == Decision("unfinished", latest, None, 2, 5)
    saved = png(out / "a.png")
    done = ledger_row(history, out, identity, "completed", key="k4", paths=[str(saved)])
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[identity] == Decision("done", done, None, 2, 5)
    assert plan.estimate_cents == 0 and not plan.creates(plan.decisions[identity])


def test_a_failed_row_is_retried_with_a_new_key_only_when_asked(
    client: AsyncClient, history: History, out: Path
) -> None:
    identity = recipe("a red lamp") + ".0"
    ledger_row(history, out, identity, "failed", key="k1")
    row = ledger_row(history, out, identity, "failed", key="k2")
    kept = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert kept.decisions[identity] == Decision("failed", row, None, 2, 5)
    assert kept.estimate_cents == 0
    [item] = good(kept, history)
    assert item.kind == "failed" and item.entry is not None and item.entry.id == row
    assert item.job.idempotency_key == "k2"
    retried = plan_batch(client, [Row(1, "a red lamp")], out, history, retry_failed=True)
    assert retried.estimate_cents == 5
    [item] = good(retried, history)
    assert item.kind == "failed" and item.entry is None
    # Each retry of a failure gets a key of its own: the old one would replay the failure.
    assert item.job.idempotency_key == key_for(out, identity, 2)
    assert item.job.idempotency_key == str(uuid.uuid5(NAMESPACE, f"{out}\n{identity}\n2"))


def test_the_derived_key_is_pinned(client: AsyncClient, history: History) -> None:
    out = Path("/srv/batches/lamps")  # never written: a plan makes no folder
    [item] = good(plan_batch(client, [Row(1, "a red lamp")], out, history), history)
    # uuid5(NAMESPACE, "/srv/batches/lamps\nea39efc425aa3b8c49289fad.0\n0"), as released.
    assert item.job.idempotency_key == "66467ecc-c95f-5264-8a38-899e9991e7f1"


def test_a_format_the_saved_file_is_not_in_is_unfinished(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [
        Row(1, "a red lamp", format="jpeg"),
        Row(2, "a blue lamp", format="png"),
        Row(3, "a green lamp", format="png"),
        Row(4, "a white lamp", format="png"),
    ]
    ids = [
        recipe("a red lamp", fmt="jpeg") + ".0",
        recipe("a blue lamp", fmt="png") + ".0",
        recipe("a green lamp", fmt="png") + ".0",
        recipe("a white lamp", fmt="png") + ".0",
    ]
    as_png = png(out / "one.png")
    upper = png(out / "two.PNG")
    jpg = out / "three.jpg"
    jpg.write_bytes(b"not checked")
    ledger_row(history, out, ids[0], "completed", paths=[str(as_png)])
    ledger_row(history, out, ids[1], "completed", paths=[str(upper)])
    ledger_row(history, out, ids[2], "completed", paths=[str(upper), str(jpg)])
    ledger_row(history, out, ids[3], "completed", paths=[str(upper), str(out / "gone.png")])
    plan = plan_batch(client, rows, out, history)
    assert [plan.decisions[i].kind for i in ids] == [
        "unfinished",
        "done",
        "unfinished",
        "unfinished",
    ]


def test_a_paid_slot_makes_a_new_row_there_a_change(
    client: AsyncClient, history: History, out: Path
) -> None:
    old = ledger_row(history, out, "an-old-identity.0", "completed", slot="hero")
    prompt_slot = slot_of("a blue lamp", 0)
    ledger_row(history, out, "another-old-identity.0", "completed", slot=prompt_slot)
    ledger_row(history, out, "a-failed-one.0", "failed", slot="failed-here")
    rows = [
        Row(1, "a red lamp at night", name="hero"),
        Row(2, "a blue lamp", model="flex"),
        Row(3, "a green lamp", name="failed-here"),
        Row(4, "a white lamp", name="elsewhere"),
    ]
    plan = plan_batch(client, rows, out, history)
    items = good(plan, history)
    assert [p.kind for p in items] == ["changed", "changed", "new", "new"]
    assert old not in {d.entry_id for d in plan.decisions.values()}
    assert plan.estimate_cents == 5 + 14 + 5 + 5
    # A row whose own identity holds the slot is not a change of itself.
    saved = png(out / "hero.png")
    identity = recipe("a red lamp at night", name="hero") + ".0"
    ledger_row(history, out, identity, "completed", slot="hero", paths=[str(saved)])
    plan = plan_batch(client, rows[:1], out, history)
    assert plan.decisions[identity].kind == "done"


# ---------------------------------------------------------------------------------------------
# The folder: files another run (or a lost ledger) left


def sidecar(out: Path, file: str, **fields: Any) -> Path:
    found: dict[str, Any] = {
        "task_id": "0b4f3c1e-0000-4000-8000-000000000001",
        "prompt": "a red lamp",
        "model": PRO_T2I,
        "action": "text_to_image",
        "aspect_ratio": "1:1",
        "resolution": "1k",
        "cost_usd": 0.05,
    }
    found.update(fields)
    path = out / (file + ".json")
    path.write_text(json.dumps(found))
    return path


def stem_of(prompt: str, **asked: Any) -> str:
    slug = "-".join(prompt.replace(",", "").split()[:5])
    return f"{slug}-{recipe(prompt, **asked)[:8]}"


def test_an_image_in_the_folder_with_its_sidecar_is_done_and_joins_the_ledger(
    client: AsyncClient, history: History, out: Path
) -> None:
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    sidecar(out, f"{stem}.png")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    identity = recipe("a red lamp") + ".0"
    decision = plan.decisions[identity]
    assert decision.kind == "done" and decision.key_id is None
    [entry] = history.in_batch(str(out), identity)
    assert entry.id == decision.entry_id
    assert (entry.task_id, entry.status, entry.cost) == (
        "0b4f3c1e-0000-4000-8000-000000000001",
        "completed",
        0.05,
    )
    assert (entry.action, entry.model, entry.prompt) == ("text_to_image", PRO_T2I, "a red lamp")
    assert entry.params == {"model": "pro"}
    assert entry.paths == [str(out / f"{stem}.png")]
    assert entry.idempotency_key is None and entry.base_url is None
    # Planned again, the ledger row is found by identity: still one row.
    again = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert again.decisions[identity].kind == "done"
    assert len(history.in_batch(str(out))) == 1


@pytest.mark.parametrize(
    ("cost", "kept"), [(1, 1.0), (0.07, 0.07), ("0.05", None), (None, None), (True, 1.0)]
)
def test_a_sidecars_cost_is_kept_only_when_it_is_a_number(
    client: AsyncClient, history: History, out: Path, cost: Any, kept: float | None
) -> None:
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    sidecar(out, f"{stem}.png", cost_usd=cost)
    plan_batch(client, [Row(1, "a red lamp")], out, history)
    [entry] = history.in_batch(str(out))
    assert entry.cost == kept


def test_a_sidecar_of_a_served_format_is_found_by_its_suffix(
    client: AsyncClient, history: History, out: Path
) -> None:
    stem = stem_of("a red lamp")
    (out / f"{stem}.webp").write_bytes(b"webp bytes")
    sidecar(out, f"{stem}.webp")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[recipe("a red lamp") + ".0"].kind == "done"
    [entry] = history.in_batch(str(out))
    assert entry.paths == [str(out / f"{stem}.webp")]


def test_a_sidecar_for_a_format_asked_is_found_by_that_formats_suffix(
    client: AsyncClient, history: History, out: Path
) -> None:
    (out / "hero.jpg").write_bytes(b"jpeg bytes")
    sidecar(out, "hero.jpg", prompt="a red lamp", resolution="2k", aspect_ratio="16:9")
    (out / "hero.png").write_bytes(b"png bytes")
    sidecar(out, "hero.png", task_id="0b4f3c1e-0000-4000-8000-000000000002")
    row = Row(1, "a red lamp", aspect_ratio="16:9", resolution="2k", name="hero.jpg")
    plan = plan_batch(client, [row], out, history)
    assert [p.kind for p in good(plan, history)] == ["done"]
    [entry] = history.in_batch(str(out))
    assert entry.task_id == "0b4f3c1e-0000-4000-8000-000000000001"
    assert entry.paths == [str(out / "hero.jpg")]


def test_an_image_already_in_the_ledger_is_claimed_for_the_batch(
    client: AsyncClient, history: History, out: Path
) -> None:
    task = "0b4f3c1e-0000-4000-8000-000000000001"
    row = ledger_row(history, out, None, "unsaved", key="k-old", task_id=task)
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    sidecar(out, f"{stem}.png")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    identity = recipe("a red lamp") + ".0"
    assert plan.decisions[identity] == Decision("done", row, None, 0, 5)
    entry = history.get(row)
    assert entry is not None
    assert (entry.batch, entry.identity, entry.status) == (str(out), identity, "completed")
    assert entry.paths == [str(out / f"{stem}.png")]
    [item] = good(plan, history)
    assert item.job.idempotency_key == "k-old"


@pytest.mark.parametrize(
    "differs",
    [
        {"prompt": "a blue lamp"},
        {"model": "flux-2-flex-text-to-image"},
        {"action": "remix_image"},
        {"aspect_ratio": "4:3"},
        {"resolution": "2k"},
    ],
)
def test_a_sidecar_of_another_request_makes_the_row_a_change_beside_it(
    client: AsyncClient, history: History, out: Path, differs: dict[str, Any]
) -> None:
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    sidecar(out, f"{stem}.png", **differs)
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    decision = plan.decisions[recipe("a red lamp") + ".0"]
    assert decision == Decision("changed", None, None, 0, 5)
    assert history.in_batch(str(out)) == []


def test_a_sidecar_of_a_named_file_with_all_options_given_matches(
    client: AsyncClient, history: History, out: Path
) -> None:
    png(out / "hero.png")
    sidecar(out, "hero.png", model="flux-2-flex-text-to-image")
    row = Row(1, "a red lamp", model="flex", aspect_ratio="1:1", resolution="1k", name="hero")
    plan = plan_batch(client, [row], out, history, defaults=Defaults(format="png"))
    assert [p.kind for p in good(plan, history)] == ["done"]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"task_id": 12}),
        json.dumps({"prompt": "a red lamp"}),
    ],
)
def test_a_sidecar_that_is_not_fluxclaws_is_not_a_paid_image(
    client: AsyncClient, history: History, out: Path, text: str
) -> None:
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    (out / f"{stem}.png.json").write_text(text)
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[recipe("a red lamp") + ".0"].kind == "new"


def test_a_sidecar_without_its_image_still_marks_the_slot_as_paid(
    client: AsyncClient, history: History, out: Path
) -> None:
    stem = stem_of("a red lamp")
    sidecar(out, f"{stem}.png", prompt="another lamp")  # the image itself was moved away
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[recipe("a red lamp") + ".0"].kind == "changed"
    sidecar(out, f"{stem}.png")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    # The same request, its file gone: paid but not on disk, so the run saves it again.
    assert plan.decisions[recipe("a red lamp") + ".0"].kind == "unfinished"


# ---------------------------------------------------------------------------------------------
# The plan as a whole


def test_bad_rows_are_merged_by_line_counted_and_kept_up_to_a_limit(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows: list[Row | BadRow] = [Row(1, "a red lamp"), Row(3, "a blue lamp")]
    given = [BadRow(2, "not a JSON object")] + [
        BadRow(n, f"bad {n}") for n in range(4, 4 + BAD_KEPT)
    ]
    plan = plan_batch(client, rows, out, history, bad_rows=iter(given))
    assert plan.counts["bad"] == BAD_KEPT + 1 and len(plan.bad) == BAD_KEPT
    assert plan.bad[0] == BadRow(2, "not a JSON object")
    assert plan.bad[-1] == BadRow(BAD_KEPT + 2, f"bad {BAD_KEPT + 2}")
    found = planned(plan, history)
    assert [item.line if isinstance(item, BadRow) else item.row.line for item in found] == list(
        range(1, BAD_KEPT + 4)
    )
    assert isinstance(found[0], Planned) and isinstance(found[2], Planned)
    assert plan.runnable == 2


def test_a_one_shot_iterator_of_rows_is_read_again_by_the_run(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = iter([Row(1, "a red lamp"), Row(2, "a blue lamp")])
    plan = plan_batch(client, rows, out, history)
    assert [p.row.line for p in good(plan, history)] == [1, 2]
    assert [p.row.line for p in good(plan, history)] == [1, 2]


def test_a_file_past_the_row_limit_is_refused(
    client: AsyncClient, history: History, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contract, "BATCH_MAX_ROWS", 1_000)  # 100,000 rows would be slow here
    rows: list[Row | BadRow] = [Row(n, f"lamp number {n}") for n in range(1, 1_001)]
    assert plan_batch(client, rows, out, history).runnable == 1_000
    rows.insert(0, BadRow(1, "bad rows do not count"))
    assert plan_batch(client, rows, out, history).runnable == 1_000
    rows.append(Row(1_001, "lamp number 1001"))
    with pytest.raises(BadFile) as refused:
        plan_batch(client, rows, out, history)
    assert str(refused.value) == (
        "it has more than 1,000 rows; split it into batches of at most that many "
        "(each into its own folder)"
    )


def test_a_row_edited_after_the_plan_is_a_bad_row_of_the_run(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows: list[Row | BadRow] = [BadRow(1, "kept"), Row(2, "a red lamp"), Row(3, "a blue lamp")]
    plan = plan_batch(client, rows, out, history)
    rows[1] = Row(2, "a green lamp")
    found = planned(plan, history)
    assert found[:2] == [
        BadRow(1, "kept"),
        BadRow(2, "the file changed while the batch ran; run it again"),
    ]
    assert isinstance(found[2], Planned) and found[2].row.line == 3


def plan_of(drafter: Drafter, retry_failed: bool, *decisions: tuple[str, int | None]) -> Plan:
    found = {
        f"id{n}": Decision(kind, None, None, 0, cents) for n, (kind, cents) in enumerate(decisions)
    }
    return Plan("b", [], drafter, found, [], 0, retry_failed)


def test_what_a_run_creates_and_what_it_would_cost(client: AsyncClient, out: Path) -> None:
    drafter = Drafter(client, out, Defaults(), out, None)
    plan = plan_of(drafter, False, ("new", 5), ("changed", 7), ("failed", 11), ("done", 13))
    assert [plan.creates(d) for d in plan.decisions.values()] == [True, True, False, False]
    assert plan.estimate_cents == 12
    plan = plan_of(drafter, True, ("new", 5), ("changed", 7), ("failed", 11), ("done", 13))
    assert [plan.creates(d) for d in plan.decisions.values()] == [True, True, True, False]
    assert plan.estimate_cents == 23
    for kind in ("done", "unfinished", "bad"):
        assert not plan.creates(Decision(kind, None, None, 0, 5))
    # An unknown price counts only where the run would pay it.
    assert plan_of(drafter, False, ("new", 5), ("failed", None), ("done", None)).estimate_cents == 5
    assert plan_of(drafter, True, ("new", 5), ("failed", None)).estimate_cents is None
    assert plan_of(drafter, False, ("changed", None), ("new", 5)).estimate_cents is None
    assert plan_of(drafter, False).estimate_cents == 0


def test_describe_says_the_counts_and_the_price(
    client: AsyncClient, history: History, out: Path
) -> None:
    identity = recipe("a done lamp") + ".0"
    ledger_row(history, out, identity, "completed", paths=[str(png(out / "d.png"))])
    rows: list[Row | BadRow] = [
        Row(1, "a red lamp"),
        Row(2, "a blue lamp", model="flex", resolution="2k"),
        Row(6, "a green lamp", model="flex", resolution="2k"),
        Row(3, "a done lamp"),
        BadRow(4, "not a JSON object"),
    ]
    plan = plan_batch(client, rows, out, history)
    assert plan.describe() == (
        "plan: 1 done, 3 new, 0 changed, 0 unfinished, 0 failed, 1 bad; about $0.53 to create"
    )
    rows.append(Row(5, "a max lamp", model="max", aspect_ratio="1:1"))
    plan = plan_batch(client, rows, out, history)
    assert plan.describe() == (
        "plan: 1 done, 4 new, 0 changed, 0 unfinished, 0 failed, 1 bad; "
        "price unknown (a model without a known price)"
    )
    assert plan_batch(client, [], out, history).describe() == (
        "plan: 0 done, 0 new, 0 changed, 0 unfinished, 0 failed, 0 bad; about $0.00 to create"
    )


def test_to_json_is_one_object_with_the_counts_the_price_and_every_row(
    client: AsyncClient, history: History, out: Path
) -> None:
    task = "0b4f3c1e-0000-4000-8000-000000000009"
    done = recipe("a done lamp") + ".0"
    ledger_row(history, out, done, "completed", paths=[str(png(out / "d.png"))], task_id=task)
    rows: list[Row | BadRow] = [
        Row(1, "a red lamp", name="red"),
        BadRow(2, "not a JSON object"),
        Row(3, "a done lamp", model="flex"),
    ]
    done = recipe("a done lamp", model="flux-2-flex-text-to-image") + ".0"
    history.tag(history.in_batch(str(out))[0].id, batch=str(out), identity=done)
    plan = plan_batch(client, rows, out, history)
    chunks = list(plan.to_json(history))
    red = recipe("a red lamp", name="red") + ".0"
    assert chunks[0] == (
        '{"done": 1, "new": 1, "changed": 0, "unfinished": 0, "failed": 0, "bad": 1, '
        '"estimate_usd": 0.05, "rows": ['
    )
    assert chunks[-1] == "]}"
    assert json.loads("".join(chunks)) == {
        "done": 1,
        "new": 1,
        "changed": 0,
        "unfinished": 0,
        "failed": 0,
        "bad": 1,
        "estimate_usd": 0.05,
        "rows": [
            {
                "line": 1,
                "kind": "new",
                "identity": red,
                "name": "red",
                "prompt": "a red lamp",
                "model": "pro",
                "task_id": None,
                "estimate_usd": 0.05,
            },
            {"line": 2, "kind": "bad", "error": "not a JSON object"},
            {
                "line": 3,
                "kind": "done",
                "identity": done,
                "name": f"a-done-lamp-{done[:8]}",
                "prompt": "a done lamp",
                "model": "flex",
                "task_id": task,
                "estimate_usd": 0.14,
            },
        ],
    }
    assert "".join(chunks).count(", {") == 2 and "[, " not in "".join(chunks)


def test_to_json_says_null_for_an_unknown_price(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(1, "a max lamp", model="max", aspect_ratio="1:1")]
    plan = plan_batch(client, rows, out, history)
    found = json.loads("".join(plan.to_json(history)))
    assert found["estimate_usd"] is None and found["rows"][0]["estimate_usd"] is None
    assert found["new"] == 1 and set(found) == {*KINDS, "estimate_usd", "rows"}


def test_an_old_journal_is_read_with_the_default_format_merged_in(
    client: AsyncClient, history: History, out: Path
) -> None:
    journal = out / ".fluxclaw" / "journal.sqlite"
    journal.parent.mkdir()
    # A release before the ledger fingerprinted the row with the batch's default format in it.
    printed = Row(1, "a red lamp", format="jpeg").fingerprint()
    with sqlite3.connect(journal) as db:
        db.execute(
            "CREATE TABLE rows (line INTEGER, fingerprint TEXT, idempotency_key TEXT,"
            " state TEXT, task_id TEXT, cost REAL, path TEXT, updated_at REAL)"
        )
        db.execute(
            "INSERT INTO rows VALUES (1, ?, 'k-journal', 'failed', NULL, NULL, NULL, 1.0)",
            (printed,),
        )
    db.close()
    plan = plan_batch(
        client,
        [Row(1, "a red lamp"), Row(2, "a lamp")],
        out,
        history,
        defaults=Defaults(format="jpeg"),
    )
    identity = recipe("a red lamp", fmt="jpeg") + ".0"
    assert plan.decisions[identity].kind == "failed"
    [item, _] = good(plan, history)
    assert item.job.idempotency_key == "k-journal"


def test_planned_to_json_reports_a_row(history: History) -> None:
    row = ledger_row(history, Path("/b"), "i.0", "completed", task_id="t-1")
    entry = history.get(row)
    job = Job("text_to_image", "a red lamp", model="flex", stem="lamp", identity="i.0")
    assert Planned(Row(4, "a red lamp"), job, "done", entry, 14).to_json() == {
        "line": 4,
        "kind": "done",
        "identity": "i.0",
        "name": "lamp",
        "prompt": "a red lamp",
        "model": "flex",
        "task_id": "t-1",
        "estimate_usd": 0.14,
    }
    found = Planned(Row(4, "a red lamp"), job, "new", None, None).to_json()
    assert found["task_id"] is None and found["estimate_usd"] is None
    assert Planned(Row(4, "x"), job, "new", None, 0).to_json()["estimate_usd"] == 0


def test_the_plans_price_is_in_dollars_and_cents(
    client: AsyncClient, history: History, out: Path
) -> None:
    rows = [Row(n, f"a flex lamp number {n}", model="flex", resolution="2k") for n in (1, 2, 3)]
    plan = plan_batch(client, rows, out, history)
    assert plan.estimate_cents == 72
    assert json.loads("".join(plan.to_json(history)))["estimate_usd"] == 0.72
    assert plan.describe().endswith("; about $0.72 to create")


@pytest.mark.parametrize("status", ["rejected", "gone"])
def test_a_refused_row_where_another_image_was_paid_is_a_change_with_its_old_key(
    client: AsyncClient, history: History, out: Path, status: str
) -> None:
    identity = recipe("a red lamp") + ".0"
    row = ledger_row(history, out, identity, status, key="k-refused")
    stem = stem_of("a red lamp")
    png(out / f"{stem}.png")
    sidecar(out, f"{stem}.png", prompt="another lamp")
    plan = plan_batch(client, [Row(1, "a red lamp")], out, history)
    assert plan.decisions[identity] == Decision("changed", None, row, 0, 5)
    [item] = good(plan, history)
    assert item.job.idempotency_key == "k-refused"
