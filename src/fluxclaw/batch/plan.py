"""A batch's plan: each row's identity, file name and key, and what a run would do with it.

A row is what it asks for (action, prompt, model, ratio, resolution, format, name, and each
local source by the hash of its bytes), plus an occurrence number among identical rows (four
identical rows are four images); never its line or anything kept in a file that can be lost.
Its idempotency key is derived from its batch (the output folder) and that identity, and its
ledger row (the user's history) carries both, so comments, blank lines, reordering, a lost
journal or another door re-running the batch pay nothing again. A row that asks for something
new under a name (or prompt) already paid for is `changed`: it is made again only when the user
says so, beside the old image, never over it.

A plan keeps a few small values per row (its `Decision`), never the row: the run and the
manifest read the rows again (`Plan.each`), drafted the same way, so a file of any size is
planned and run in bounded memory (at most `contract.BATCH_MAX_ROWS` rows).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxclaw import contract, errors, jobs, saving
from fluxclaw.batch.rows import BadFile, BadRow, Row
from fluxclaw.files import EXTENSIONS, SUFFIX, ImageFormat
from fluxclaw.history import UNFINISHED, Entry, History

if TYPE_CHECKING:
    from fluxclaw.client import AsyncClient

# Keys are uuid5 names in this namespace: the same batch folder and identity, the same key.
NAMESPACE = uuid.UUID("5b0f6f4e-2d1c-4d7e-9a59-6f1c1c0a7e31")
KINDS = ("done", "new", "changed", "unfinished", "failed", "bad")
BAD_KEPT = 100  # bad rows a plan keeps to show; the manifest lists them all


@dataclass(frozen=True)
class Defaults:
    model: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    format: ImageFormat | None = None
    # False turns the checker off for rows whose model has the switch (Pro, Flex; Max has none).
    # Not part of a row's identity: a done row stays done whichever way it is set.
    safety_checker: bool | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What a run does with one row, in a few numbers (the row itself is read again)."""

    kind: str  # done, new, changed, unfinished or failed
    entry_id: int | None  # the ledger row it finishes or reports (its latest)
    key_id: int | None  # a ledger row whose key a new create sends again
    failures: int  # failed tasks of this identity: each retry gets a new key
    estimate_cents: int | None


@dataclass(frozen=True)
class Planned:
    """One row as a run meets it: its job (key, name, batch, identity) and what to do."""

    row: Row
    job: jobs.Job
    kind: str
    entry: Entry | None  # its latest ledger row, when the run finishes or reports it
    estimate_cents: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.row.line,
            "kind": self.kind,
            "identity": self.job.identity,
            "name": self.job.stem,
            "prompt": self.row.prompt,
            "model": self.job.model,
            "task_id": self.entry.task_id if self.entry else None,
            "estimate_usd": None if self.estimate_cents is None else self.estimate_cents / 100,
        }


class Drafter:
    """Rows to jobs (identity, file name, slot), the same on every read of the same rows: the
    plan and the run meet each row with the same identity."""

    def __init__(
        self,
        client: AsyncClient,
        out: Path,
        defaults: Defaults,
        base: Path,
        callback_url: str | None,
    ) -> None:
        self.client = client
        self.out = out
        self.defaults = defaults
        self.base = base
        self.callback_url = callback_url
        self.hashes: dict[str, str] = {}  # local source -> hash of its bytes, read once

    def drafts(self, rows: Iterable[Row | BadRow]) -> Iterator[tuple[Row, jobs.Job] | BadRow]:
        seen: Counter[str] = Counter()
        prompts: Counter[str] = Counter()
        names: dict[str, int] = {}
        for raw in rows:
            if isinstance(raw, BadRow):
                yield raw
                continue
            row = _with_defaults(raw, self.defaults, self.base)
            try:
                job = _job(row, self.out, self.callback_url, self.defaults)
                self.client.draft(job.action, job.prompt, job.sources, job.options())
                if row.name:  # a file name is written where others may read it
                    self.client.core.refuse_the_key({"name": row.name})
                digest = _digest(row, job, self.hashes)
            except errors.FluxclawError as error:
                yield BadRow(row.line, error.message)
                continue
            except OSError as error:
                yield BadRow(row.line, f"cannot read a source image ({error})")
                continue
            occurrence = seen[digest]
            seen[digest] += 1
            prompt_key = hashlib.sha256(row.prompt.encode()).hexdigest()[:12]
            slot = row.name or f"p-{prompt_key}.{prompts[prompt_key]}"
            prompts[prompt_key] += 1
            stem = _stem(row, digest, occurrence)
            clash = _clash(names, stem, job.format)
            if clash is not None:
                yield BadRow(row.line, f"file name {clash[0]} is already used by line {clash[1]}")
                continue
            names[_name_key(stem, job.format)] = row.line
            identity = f"{digest}.{occurrence}"
            yield row, replace(job, stem=stem, identity=identity, slot=slot)


@dataclass
class Plan:
    batch: str
    rows: Iterable[Row | BadRow]  # read again by `each`
    drafter: Drafter
    decisions: dict[str, Decision]  # by identity
    bad: list[BadRow]  # the first BAD_KEPT bad rows
    bad_count: int = 0
    retry_failed: bool = False
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.counts = Counter(d.kind for d in self.decisions.values())
        self.counts["bad"] = self.bad_count

    @property
    def runnable(self) -> int:
        """Rows that are not bad."""
        return len(self.decisions)

    def creates(self, decision: Decision) -> bool:
        """Whether a run sends a new create for this row."""
        return decision.kind in ("new", "changed") or (
            decision.kind == "failed" and self.retry_failed
        )

    @property
    def estimate_cents(self) -> int | None:
        """What the rows this run creates would cost (None: one has no known price)."""
        total = 0
        for decision in self.decisions.values():
            if self.creates(decision):
                if decision.estimate_cents is None:
                    return None
                total += decision.estimate_cents
        return total

    def each(self, history: History) -> Iterator[Planned | BadRow]:
        """The rows again, in file order, each with its job and key; a row the file no longer
        has as planned (it changed since) is a bad row."""
        for item in self.drafter.drafts(self.rows):
            if isinstance(item, BadRow):
                yield item
                continue
            row, job = item
            decision = self.decisions.get(job.identity or "")
            if decision is None:
                yield BadRow(row.line, "the file changed while the batch ran; run it again")
                continue
            entry = None if decision.entry_id is None else history.get(decision.entry_id)
            if decision.kind == "failed" and self.retry_failed:
                entry = None  # a new create with a new key: the old key would replay the failure
            reused = None if decision.key_id is None else history.get(decision.key_id)
            if entry is not None and entry.idempotency_key:
                key = entry.idempotency_key
            elif reused is not None and reused.idempotency_key:
                key = reused.idempotency_key
            else:
                name = f"{self.batch}\n{job.identity}\n{decision.failures}"
                key = str(uuid.uuid5(NAMESPACE, name))
            job = replace(job, idempotency_key=key, batch=self.batch)
            yield Planned(row, job, decision.kind, entry, decision.estimate_cents)

    def to_json(self, history: History) -> Iterator[str]:
        """The plan as one JSON object, written a row at a time."""
        cents = self.estimate_cents
        head: dict[str, Any] = {kind: self.counts.get(kind, 0) for kind in KINDS}
        head["estimate_usd"] = None if cents is None else round(cents / 100, 2)
        yield json.dumps(head)[:-1] + ', "rows": ['
        for number, item in enumerate(self.each(history)):
            line = (
                item.to_json()
                if isinstance(item, Planned)
                else {"line": item.line, "kind": "bad", "error": item.error}
            )
            yield ("" if number == 0 else ", ") + json.dumps(line)
        yield "]}"

    def describe(self) -> str:
        """One line a person reads before paying."""
        cents = self.estimate_cents
        price = (
            "price unknown (a model without a known price)"
            if cents is None
            else (f"about ${cents / 100:.2f} to create")
        )
        parts = ", ".join(f"{self.counts.get(kind, 0)} {kind}" for kind in KINDS)
        return f"plan: {parts}; {price}"


def plan_batch(
    client: AsyncClient,
    rows: Iterable[Row | BadRow],
    out: Path,
    history: History,
    *,
    bad_rows: Iterable[BadRow] = (),
    defaults: Defaults = Defaults(),
    sources_from: Path | None = None,
    retry_failed: bool = False,
    callback_url: str | None = None,
) -> Plan:
    """What a run of `rows` into `out` would do; reads local sources and the ledger, sends
    nothing. `rows` is read again by the run (a list, or a `RowFile`); a one-shot iterator is
    read into a list first. Raises `BadFile` for a file past `contract.BATCH_MAX_ROWS`."""
    from fluxclaw.batch import legacy

    if iter(rows) is rows:  # an iterator: it cannot be read twice
        rows = list(rows)
    bad_given = list(bad_rows)
    if bad_given:
        rows = _merged(rows, bad_given)
    batch = str(out)
    drafter = Drafter(client, out, defaults, sources_from or Path.cwd(), callback_url)
    # Older journals fingerprinted rows with the default format merged in (read only if one).
    legacy.adopt_journal(
        out,
        history,
        (
            (replace(r, format=r.format or defaults.format), j)
            for r, j in _good(drafter.drafts(rows))
        ),
    )
    decisions: dict[str, Decision] = {}
    new_slots: dict[str, str] = {}  # identity -> slot, of the rows that look new
    bad: list[BadRow] = []
    bad_count = 0
    for item in drafter.drafts(rows):
        if isinstance(item, BadRow):
            bad_count += 1
            if len(bad) < BAD_KEPT:
                bad.append(item)
            continue
        if len(decisions) >= contract.BATCH_MAX_ROWS:
            raise BadFile(
                f"it has more than {contract.BATCH_MAX_ROWS:,} rows; split it into batches "
                "of at most that many (each into its own folder)"
            )
        _, job = item
        identity = job.identity or ""
        entries = history.in_batch(batch, identity)
        latest: Entry | None = entries[-1] if entries else None
        if latest is None:  # the folder moved, or the ledger was lost: the files still tell
            latest = _on_disk(history, batch, job)
        kind, entry = _kind(latest, _taken(job), job.format)
        if kind == "new" and job.slot:
            new_slots[identity] = job.slot
        resolution = job.resolution or contract.DEFAULT_RESOLUTION
        estimate = client.estimate_cost(job.model, resolution, action=job.action).total_cents
        reuse = (
            latest.id
            if entry is None
            and latest is not None
            and latest.status in ("rejected", "gone")
            and latest.idempotency_key
            else None  # refused before anything was made: the same key again
        )
        failures = sum(e.status == "failed" for e in entries)
        decisions[identity] = Decision(kind, entry.id if entry else None, reuse, failures, estimate)
    # Where an image was paid for that the file no longer asks for: a row there now is a change.
    if new_slots:
        paid = history.paid_slots(batch, besides=decisions)
        for identity, slot in new_slots.items():
            if slot in paid:
                decisions[identity] = replace(decisions[identity], kind="changed")
    return Plan(batch, rows, drafter, decisions, bad, bad_count, retry_failed)


def _merged(rows: Iterable[Row | BadRow], bad: list[BadRow]) -> list[Row | BadRow]:
    """Rows and bad rows given apart (`read_rows`), in line order."""
    return sorted(itertools.chain(rows, bad), key=lambda item: item.line)


def _good(items: Iterable[tuple[Row, jobs.Job] | BadRow]) -> Iterator[tuple[Row, jobs.Job]]:
    for item in items:
        if not isinstance(item, BadRow):
            yield item


def _name_key(stem: str, fmt: ImageFormat | None) -> str:
    """A file name as compared (saved names are case-insensitive here); a row saved as served
    takes its suffix from the image, so it holds the stem with any suffix (`*`)."""
    return (stem + (SUFFIX[fmt] if fmt else "*")).lower()


def _clash(names: dict[str, int], stem: str, fmt: ImageFormat | None) -> tuple[str, int] | None:
    """The name and line of an earlier row this one's file would collide with, if any."""
    keys = [_name_key(stem, fmt), _name_key(stem, None)]
    if fmt is None:
        keys += [_name_key(stem, other) for other in SUFFIX]
    for key in keys:
        if key in names:
            return key, names[key]
    return None


def _saved_as(job: jobs.Job) -> Path:
    """Where the row's image is (or will be): with its format's suffix, or, saved as served,
    the suffix a file already there has (PNG's if none)."""
    assert job.output is not None and job.stem is not None
    folder = Path(job.output)
    if job.format:
        return folder / (job.stem + SUFFIX[job.format])
    for suffix in SUFFIX.values():
        if (folder / (job.stem + suffix)).exists():
            return folder / (job.stem + suffix)
    return folder / (job.stem + SUFFIX["png"])


def _sidecar(job: jobs.Job) -> dict[str, Any] | None:
    """What fluxclaw wrote beside the file this row would be saved as, if anything."""
    try:
        data = json.loads(_saved_as(job).with_name(_saved_as(job).name + ".json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("task_id"), str) else None


def _taken(job: jobs.Job) -> bool:
    """A paid image of another request lies where this row would be saved."""
    return _sidecar(job) is not None


def _on_disk(history: History, batch: str, job: jobs.Job) -> Entry | None:
    """A row's image already saved in the folder (its sidecar says the same request): its
    ledger row, moved to this batch (the folder was moved or renamed), or made anew (the
    ledger was lost), so the row counts as done instead of being paid for again."""
    found = _sidecar(job)
    if found is None:
        return None
    model = contract.resolve_model(job.model, job.action).id
    same = (
        found.get("prompt") == job.prompt
        and found.get("model") == model
        and found.get("action") == job.action
        and found.get("aspect_ratio") == (job.aspect_ratio or contract.DEFAULT_ASPECT_RATIO)
        and found.get("resolution") == (job.resolution or contract.DEFAULT_RESOLUTION)
    )
    if not same:
        return None
    path = str(_saved_as(job))
    assert job.identity is not None
    entry = history.find(str(found["task_id"]))
    if entry is None:
        row = history.start(
            action=job.action,
            model=model,
            prompt=job.prompt,
            params=job.params(),
            idempotency_key=None,
            base_url=None,
            task_id=str(found["task_id"]),
            batch=batch,
            identity=job.identity,
        )
        cost = found.get("cost_usd")
        history.update(
            row,
            status="completed",
            cost=float(cost) if isinstance(cost, int | float) else None,
            paths=[path],
        )
    else:
        history.tag(entry.id, batch=batch, identity=job.identity)
        history.update(entry.id, status="completed", paths=[path])
    return history.find(str(found["task_id"]))


def _kind(
    latest: Entry | None, slot_paid: bool, fmt: ImageFormat | None
) -> tuple[str, Entry | None]:
    if latest is None or latest.status in ("rejected", "gone"):
        return ("changed" if slot_paid else "new"), None
    if (
        latest.status == "completed"
        and latest.paths
        and all(Path(p).is_file() for p in latest.paths)
        and (
            fmt is None or all(EXTENSIONS.get(Path(p).suffix.lower()) == fmt for p in latest.paths)
        )
    ):
        return "done", latest  # saved, and in the format the row asks for (if it asks)
    if latest.status == "failed":
        return "failed", latest
    if latest.status in UNFINISHED or latest.status == "completed":
        return "unfinished", latest  # running, timed out, unanswered, or paid but not on disk
    return "new", None


def _with_defaults(row: Row, defaults: Defaults, base: Path) -> Row:
    images = tuple(
        source if contract.is_http_url(source) else str((base / source).expanduser().resolve())
        for source in row.images
    )
    return replace(
        row,
        model=row.model or defaults.model,
        aspect_ratio=row.aspect_ratio or defaults.aspect_ratio,
        resolution=row.resolution or defaults.resolution,
        images=images,
    )


def _format(row: Row, default: ImageFormat | None) -> ImageFormat | None:
    """The row's format, else its name's suffix, else the batch's default, else as served
    (None: converting would drop the image's Content Credentials)."""
    suffix = Path(row.name or "").suffix.lower()
    return row.format or EXTENSIONS.get(suffix) or default


def _job(row: Row, out: Path, callback_url: str | None, defaults: Defaults) -> jobs.Job:
    action: contract.Action = "remix_image" if row.images else "text_to_image"
    model = row.model or contract.DEFAULT_FAMILY
    checker = defaults.safety_checker
    if checker is not None:
        try:
            family = contract.resolve_model(model, action).family
        except ValueError:
            family = None  # a bad model: the row is refused for that, by the usual check
        if family is not None and not contract.FAMILY_RULES[family].safety_checker:
            checker = None
    return jobs.Job(
        action=action,
        prompt=row.prompt,
        sources=row.images,
        model=model,
        aspect_ratio=row.aspect_ratio,
        resolution=row.resolution,
        safety_checker=checker,
        callback_url=callback_url,
        output=str(out) + "/",
        format=_format(row, defaults.format),
    )


def _digest(row: Row, job: jobs.Job, hashes: dict[str, str]) -> str:
    """What the row asks for, local sources by the hash of their bytes."""
    sources = []
    for source in row.images:
        if contract.is_http_url(source):
            sources.append(source)
            continue
        if source not in hashes:
            hashes[source] = "sha256:" + hashlib.sha256(Path(source).read_bytes()).hexdigest()
        sources.append(hashes[source])
    model = contract.resolve_model(job.model, job.action).id
    asked: list[Any] = [job.action, row.prompt, model, row.aspect_ratio, row.resolution]
    asked += [
        job.format or "png",
        row.name,
        sources,
    ]  # the identity rows had when PNG was the default
    return hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:24]


def _stem(row: Row, digest: str, occurrence: int) -> str:
    """The row's file name without suffix: its name, else its prompt's words and a short hash
    of what it asks for (reordering rows renames nothing)."""
    if row.name:
        named = Path(row.name)
        return named.stem if named.suffix.lower() in EXTENSIONS else row.name
    number = f"-{occurrence + 1}" if occurrence else ""
    return f"{saving.slug(row.prompt, 5)}-{digest[:8]}{number}"
