"""Each fault kind happens when asked for and shows in the request log; so does rate limiting."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from fluxclaw import contract
from fluxclaw.sandbox.faults import FaultSpecError, parse

from .conftest import PRO, T2I, api_client, wait_done

BODY = {"model": PRO, "prompt": "a faulty harbour [sandbox:seconds=0]"}


def last_entry(sandbox: Any) -> dict[str, Any]:
    entry: dict[str, Any] = sandbox.requests()[-1]
    return entry


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 500, "server_error"),
        ("503", 503, "service_unavailable"),
        ("429", 429, "rate_limited"),
    ],
)
def test_error_status_faults(
    api: httpx.Client, sandbox: Any, kind: str, status: int, code: str
) -> None:
    sandbox.configure(faults={kind: 1.0})
    answer = api.post(T2I, json=BODY)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert answer.headers[contract.H_REQUEST_ID]
    if kind == "429":
        assert float(answer.headers[contract.H_RETRY_AFTER]) == 0.01  # max(0.01, 1 / speed 100)
    entry = last_entry(sandbox)
    assert (entry["status"], entry["fault"], entry["path"]) == (status, kind, T2I)
    assert sandbox.tasks() == []  # no side effects


def test_reset_closes_the_connection(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"reset": 1.0})
    with pytest.raises(httpx.TransportError):
        api.get("/api/v1/me")
    entry = last_entry(sandbox)
    assert entry["fault"] == "reset" and entry["status"] is None
    sandbox.configure(faults={})
    assert api.get("/api/v1/me").status_code == 200


def test_drop_creates_the_task_then_closes_the_connection(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"drop": 1.0})
    headers = {contract.H_IDEMPOTENCY_KEY: "dropped-1"}
    with pytest.raises(httpx.TransportError):
        api.post(T2I, json=BODY, headers=headers)
    entry = last_entry(sandbox)
    assert entry["fault"] == "drop" and entry["status"] is None
    (task,) = sandbox.tasks()
    assert entry["task_id"] == task["id"]
    sandbox.configure(faults={})
    retry = api.post(T2I, json=BODY, headers=headers).json()
    assert retry["id"] == task["id"] and retry["task_replayed"] is True


def test_garbage_is_malformed_json_with_no_side_effects(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"garbage": 1.0})
    answer = api.post(T2I, json=BODY)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.content)
    assert last_entry(sandbox)["fault"] == "garbage"
    assert sandbox.tasks() == []


def test_html_is_a_proxy_error_page(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"html": 1.0})
    answer = api.get("/api/v1/me/balance")
    assert answer.status_code == 502
    assert answer.headers["content-type"].startswith("text/html")
    assert b"<html>" in answer.content
    assert last_entry(sandbox)["fault"] == "html"


def test_slow_delays_the_answer(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"slow": 0.3})
    started = time.monotonic()
    answer = api.get("/api/v1/me")
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert last_entry(sandbox)["fault"] == "slow"


def test_fail_fails_the_task_and_it_is_not_charged(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(faults={"fail": 1.0})
    task_id = api.post(T2I, json=BODY).json()["id"]
    done = wait_done(api, f"{T2I}/{task_id}")
    assert done["status"] == "failed" and "sandbox fault" in done["error"]
    assert sandbox.ledger()["charges"] == []
    assert sandbox.tasks()[0]["status"] == "failed"


def test_faults_never_touch_inspection_images_or_uploads(api: httpx.Client, sandbox: Any) -> None:
    task_id = api.post(T2I, json=BODY).json()["id"]
    url = wait_done(api, f"{T2I}/{task_id}")["images"][0]["url"]
    sandbox.configure(faults={"500": 1.0})
    assert httpx.get(url, trust_env=False).status_code == 200
    assert sandbox.ledger()["balance_cents"] == 9_995
    assert api.get(f"{T2I}/{task_id}").status_code == 500


def test_fault_rates_are_seeded_and_roughly_right(fluxclaw_sandbox_factory: Any) -> None:
    runs = []
    for _ in range(2):
        sandbox = fluxclaw_sandbox_factory(faults="500=0.2,503=0.1")
        with api_client(sandbox) as api:
            runs.append([api.get("/api/v1/me").status_code for _ in range(300)])
    assert runs[0] == runs[1]
    assert 30 < runs[0].count(500) < 90 and 10 < runs[0].count(503) < 55


def test_fault_specs_parse_both_forms() -> None:
    text = parse(
        "500=0.05,503=0.05,429=0.05,reset=0.02,drop=0.02,garbage=0.01,html=0.01,fail=0.1,slow=2@0.1"
    )
    assert text.rates["reset"] == 0.02 and text.rates["fail"] == 0.1
    assert (text.slow_seconds, text.slow_rate) == (2.0, 0.1)
    assert parse({"slow": 2}).slow_rate == 1.0
    assert parse(text.to_dict()) == text
    for bad in ("nope=1", "500=2", "500", "500=0.6,503=0.6", "slow=x"):
        with pytest.raises(FaultSpecError):
            parse(bad)


def test_bad_config_is_422(sandbox: Any) -> None:
    answer = httpx.post(
        f"{sandbox.base_url}/_sandbox/config", json={"faults": {"nope": 1}}, trust_env=False
    )
    assert answer.status_code == 422 and "faults" in answer.json()["errors"]


def test_rate_limit_is_429_with_retry_after_per_key(fluxclaw_sandbox_factory: Any) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=None, rate_limit=5)
    with api_client(sandbox, "sk-busy") as busy, api_client(sandbox, "sk-calm") as calm:
        answers = [busy.get("/api/v1/me") for _ in range(12)]
        assert calm.get("/api/v1/me").status_code == 200
    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [200] * 5 and 429 in statuses
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < float(limited.headers[contract.H_RETRY_AFTER]) <= 0.2
    assert any(r["status"] == 429 and r["fault"] is None for r in sandbox.requests())
