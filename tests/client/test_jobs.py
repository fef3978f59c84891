"""The job engine as a library user sees it: opt-in history, resume by id or key, and generation
times that a new process starts from."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import fluxclaw
from fluxclaw import PollPolicy, jobs
from fluxclaw.history import History

POLL = PollPolicy(time_scale=0.01)


def test_generate_has_no_side_effects_unless_asked(
    fluxclaw_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("FLUXCLAW_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    with fluxclaw.Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=POLL
    ) as client:
        result = client.generate("a striped umbrella on sand")
        done = jobs.run(client, jobs.Job.generate("a striped umbrella on sand", output="out/"))
    assert result.status == "completed" and done.paths[0].parent == tmp_path / "out"
    assert not data_dir.exists()  # neither call wrote a history
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_explicit_history_records_the_whole_job(fluxclaw_sandbox: Any, tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    job = jobs.Job.generate(
        "a blue door in a white wall",
        model="flex",
        aspect_ratio="2:3",
        output=str(tmp_path / "doors") + "/",
        format="webp",
    )
    with fluxclaw.Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=POLL
    ) as client:
        done = jobs.run(client, job, history=history)
    [entry] = history.search()
    assert entry.task_id == done.task_id and entry.status == "completed"
    assert entry.idempotency_key == job.idempotency_key
    assert entry.base_url == fluxclaw_sandbox.base_url and entry.cost == 0.14
    assert entry.request is not None and entry.request["model"] == "flux-2-flex-text-to-image"
    assert entry.job["target"]["folder"] == str(tmp_path / "doors")
    assert entry.paths == [str(done.paths[0])] and done.paths[0].suffix == ".webp"
    sidecar = json.loads(done.paths[0].with_name(done.paths[0].name + ".json").read_text())
    assert sidecar["prompt"] == job.prompt and sidecar["aspect_ratio"] == "2:3"
    # Resuming a finished job sends nothing and gives the same files.
    before = len(fluxclaw_sandbox.requests())
    with fluxclaw.Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url
    ) as client:
        again = jobs.resume(client, entry, history=history)
    assert again.paths == done.paths and len(fluxclaw_sandbox.requests()) == before


async def test_async_resume_by_key_after_a_dropped_create(
    fluxclaw_sandbox: Any, tmp_path: Path
) -> None:
    history = History(tmp_path / "h.sqlite")
    fluxclaw_sandbox.configure(faults={"drop": 1.0})
    job = jobs.Job.generate("a wooden boat [sandbox:seconds=0.2]", output=str(tmp_path) + "/")
    retry = fluxclaw.RetryPolicy(max_attempts=2, backoff_base=0.01)
    async with fluxclaw.AsyncClient(
        api_key=fluxclaw_sandbox.api_key,
        base_url=fluxclaw_sandbox.base_url,
        poll=POLL,
        retry=retry,
    ) as client:
        with pytest.raises(fluxclaw.NetworkError) as failure:
            await jobs.arun(client, job, history=history)
        assert f"fluxclaw resume {job.idempotency_key}" in str(failure.value)
        entry = history.find(job.idempotency_key)
        assert entry is not None and entry.status == "unanswered" and entry.task_id is None
        fluxclaw_sandbox.configure(faults={})
        done = await jobs.aresume(client, entry, history=history)
    [task] = fluxclaw_sandbox.tasks()
    assert done.task_id == task["id"] and done.paths[0].is_file()
    fluxclaw_sandbox.wait_until(lambda: fluxclaw_sandbox.ledger()["charges"])
    assert len(fluxclaw_sandbox.ledger()["charges"]) == 1


def test_learned_generation_times_reach_the_next_client(
    fluxclaw_sandbox: Any, tmp_path: Path
) -> None:
    history = History(tmp_path / "h.sqlite")
    base = fluxclaw_sandbox.base_url
    key = ("flux-2-pro-text-to-image", "1k")
    # The contract's real-time prior, not the sandbox's stated pace: learning has to find it.
    real_time = PollPolicy(time_scale=1.0)
    with fluxclaw.Client(api_key=fluxclaw_sandbox.api_key, base_url=base, poll=real_time) as client:
        for _ in range(3):
            jobs.run(
                client,
                jobs.Job.generate("a small cactus", output=str(tmp_path) + "/"),
                history=history,
            )
        learned = client.durations.snapshot(key)
    assert len(learned["first_polls"]) == 3
    stored = history.load_durations(base, *key)
    assert stored is not None and stored["first_polls"] == learned["first_polls"]
    with fluxclaw.Client(api_key=fluxclaw_sandbox.api_key, base_url=base, poll=real_time) as fresh:
        cold = fresh.durations.plan(key, "pro", "1k").first  # nothing learned yet
        jobs.run(
            fresh, jobs.Job.generate("a small cactus", output=str(tmp_path) + "/"), history=history
        )
        assert fresh.durations.snapshot(key)["first_polls"][:3] == learned["first_polls"]
    # The sandbox at speed 100 is far faster than the contract: what was learned moves the
    # first poll well before the cold client's.
    warm = History(tmp_path / "h.sqlite").load_durations(base, *key)
    assert warm is not None and warm["rescaled"] is not None
    assert warm["rescaled"] < cold


def test_jobs_in_asyncio_gather_each_get_a_row(fluxclaw_sandbox: Any, tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")

    async def main() -> list[jobs.JobResult]:
        async with fluxclaw.AsyncClient(
            api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=POLL
        ) as client:
            return await asyncio.gather(
                *(
                    jobs.arun(
                        client,
                        jobs.Job.generate(f"a lamp number {i}", output=str(tmp_path) + "/"),
                        history=history,
                    )
                    for i in range(5)
                )
            )

    done = asyncio.run(main())
    assert len({d.paths[0] for d in done}) == 5
    rows = history.search(limit=10)
    assert sorted(r.task_id or "" for r in rows) == sorted(d.task_id for d in done)
    assert {r.status for r in rows} == {"completed"}


def test_estimates_use_the_apis_price_schedules_and_fall_back_to_the_contract(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    from fluxclaw import Client

    sandbox = fluxclaw_sandbox_factory(api_key="sk-prices", max_price_cents=21)
    history = History(tmp_path / "ledger.sqlite")
    sandbox.configure(faults={"500": 1.0})  # the price API is down: the contract's table
    with Client(api_key="sk-prices", base_url=sandbox.base_url) as client:
        jobs.refresh_prices(client, history)
        assert client.estimate_cost("max", "1k").total_cents is None
        assert client.estimate_cost("pro", "2k").basis == "contract"
    sandbox.configure(faults={})
    schedules = [r for r in sandbox.requests() if r["path"] == "/api/v1/price_schedules"]
    with Client(api_key="sk-prices", base_url=sandbox.base_url) as client:
        jobs.refresh_prices(client, history)
        max_price = client.estimate_cost("max", "1k")
        assert (max_price.total_cents, max_price.basis) == (21, "schedule")
    asked = [r for r in sandbox.requests() if r["path"] == "/api/v1/price_schedules"]
    assert len(asked) == len(schedules) + 1
    # A new process finds them in the ledger and does not ask again within the hour.
    with Client(api_key="sk-prices", base_url=sandbox.base_url) as client:
        jobs.refresh_prices(client, history)
        assert client.estimate_cost("max", "1k").total_cents == 21
    assert len([r for r in sandbox.requests() if r["path"] == "/api/v1/price_schedules"]) == len(
        asked
    )


def test_a_schedule_is_checked_before_it_is_believed() -> None:
    from fluxclaw.pricing import schedule_prices

    rows = [
        {"model": "flux-2-max-text-to-image", "billing_config": {"overrides": {"1k": 9}}},
        {"model": "flux-2-pro-text-to-image", "billing_config": {"overrides": {"1k": -5}}},
        {"model": "flux-2-flex-text-to-image", "unit_price_cents": True},
        {"model": "flux-9", "billing_config": {"overrides": {"1k": 1}}},
        {"model": "flux-2-max-remix-image", "billing_config": {"overrides": {"2k": 10**9}}},
        "junk",
    ]
    assert schedule_prices({"price_schedules": rows}) == {"flux-2-max-text-to-image": {"1k": 9}}
    assert schedule_prices([1, 2]) == {} and schedule_prices({"price_schedules": 7}) == {}


def test_a_rate_limit_past_the_clients_retries_is_waited_out_with_patience(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    from fluxclaw import Client, RateLimitError, RetryPolicy

    sandbox = fluxclaw_sandbox_factory(api_key="sk-patient", retry_after=0)
    history = History(tmp_path / "ledger.sqlite")
    quick = RetryPolicy(max_attempts=2, backoff_base=0.01)
    waits: list[float] = []

    def storm_over(seconds: float) -> None:
        waits.append(seconds)
        sandbox.configure(faults={})

    with Client(api_key="sk-patient", base_url=sandbox.base_url, retry=quick) as client:
        sandbox.configure(faults={"429": 1.0})
        with pytest.raises(RateLimitError):  # no patience: the error, as before
            jobs.run(client, jobs.Job.generate("a storm", output=str(tmp_path)), history=history)
        job = jobs.Job.generate("a calm after the storm", output=str(tmp_path))
        done = jobs.run(client, job, history=history, patience=30, on_rate_limit=storm_over)
    assert len(waits) == 1 and done.status == "completed" and done.paths[0].is_file()
    assert len(sandbox.ledger()["charges"]) == 1
    rows = [e for e in history.search(limit=10) if e.idempotency_key == job.idempotency_key]
    assert {e.status for e in rows} == {"rejected", "completed"}  # one key, one charge


def test_a_refusal_after_an_unanswered_try_keeps_the_row_resumable(tmp_path: Path) -> None:
    # A create whose first try got no answer (it may have made the task) and whose retry was
    # then refused (429) is not "rejected": it is counted and `fluxclaw resume` finishes it.
    # The sandbox cannot time a lost answer before a 429, so a fake transport plays it.
    import httpx

    from fluxclaw import Client, RateLimitError, RetryPolicy

    creates: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(404, json={"error": "no prices here"})
        creates.append(request)
        if len(creates) == 1:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        body = {"error": {"code": "rate_limited", "message": "slow down"}}
        return httpx.Response(429, json=body, headers={"Retry-After": "0"})

    history = History(tmp_path / "ledger.sqlite")
    quick = RetryPolicy(max_attempts=2, backoff_base=0.01)
    transport = httpx.MockTransport(answer)
    with Client(
        api_key="sk-x", base_url="http://127.0.0.1:9", transport=transport, retry=quick
    ) as c:
        job = jobs.Job.generate("a lost answer", output=str(tmp_path))
        with pytest.raises(RateLimitError) as caught:
            jobs.run(c, job, history=history)
    assert len(creates) == 2
    assert {r.headers["Idempotency-Key"] for r in creates} == {job.idempotency_key}
    [row] = history.search(limit=5)
    assert row.status == "unanswered" and row.unfinished
    assert job.idempotency_key in str(caught.value)  # the hint: resume by this key


def test_a_bug_in_on_update_names_the_task(fluxclaw_sandbox: Any) -> None:
    from fluxclaw import Client

    def broken(status: Any) -> None:
        raise KeyError("a bug in the caller's own code")

    with (
        Client(api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url) as client,
        pytest.raises(KeyError) as caught,
    ):
        client.generate("a callback with a bug", on_update=broken)
    [task] = fluxclaw_sandbox.tasks()
    assert any(task["id"] in note for note in caught.value.__notes__)
