"""Money and identity: idempotency, the ledger, 402, 401, 409, prices, quotes and the account."""

from __future__ import annotations

from typing import Any

import httpx

from fluxclaw import contract

from .conftest import FLEX, MAX, PRO, T2I, api_client, wait_done, wait_for

BODY = {"model": PRO, "prompt": "an idempotent lighthouse [sandbox:seconds=0.1]"}


def test_same_key_same_body_is_the_same_task_charged_once(api: httpx.Client, sandbox: Any) -> None:
    headers = {contract.H_IDEMPOTENCY_KEY: "key-1"}
    first = api.post(T2I, json=BODY, headers=headers).json()
    again = api.post(T2I, json=dict(reversed(BODY.items())), headers=headers).json()
    assert "task_replayed" not in first
    assert again["id"] == first["id"] and again["task_replayed"] is True
    wait_done(api, f"{T2I}/{first['id']}")
    late = api.post(T2I, json=BODY, headers=headers).json()
    assert late["task_replayed"] is True and late["status"] == "completed"
    assert late["images"]  # a replay of a finished task carries its result
    assert len(sandbox.tasks()) == 1
    assert [c["task_id"] for c in sandbox.ledger()["charges"]] == [first["id"]]
    assert [r["idempotency_key"] for r in sandbox.requests() if r["method"] == "POST"] == [
        "key-1"
    ] * 3


def test_same_key_other_body_is_409(api: httpx.Client, sandbox: Any) -> None:
    headers = {contract.H_IDEMPOTENCY_KEY: "key-2"}
    assert api.post(T2I, json=BODY, headers=headers).status_code == 200
    conflict = api.post(T2I, json={**BODY, "aspect_ratio": "16:9"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert conflict.json()["error"]["message"]
    assert len(sandbox.tasks()) == 1


def test_idempotency_keys_are_scoped_per_api_key(fluxclaw_sandbox_factory: Any) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=None)
    ids = []
    for key in ("sk-one", "sk-two"):
        with api_client(sandbox, key) as api:
            answer = api.post(T2I, json=BODY, headers={contract.H_IDEMPOTENCY_KEY: "shared"})
            ids.append(answer.json()["id"])
    assert ids[0] != ids[1]


def test_ledger_charges_completed_tasks_at_contract_prices_and_not_failed_ones(
    api: httpx.Client, sandbox: Any
) -> None:
    bodies = [
        {"model": PRO, "prompt": "pro 1k [sandbox:seconds=0]"},
        {"model": PRO, "prompt": "pro 2k [sandbox:seconds=0]", "output_resolution": "2k"},
        {"model": FLEX, "prompt": "flex 1k [sandbox:seconds=0]"},
        {"model": FLEX, "prompt": "flex 2k [sandbox:seconds=0]", "output_resolution": "2k"},
        {"model": MAX, "prompt": "max 1k [sandbox:seconds=0]", "aspect_ratio": "1:1"},
        {"model": PRO, "prompt": "refused [sandbox:fail] [sandbox:seconds=0]"},
    ]
    ids = [api.post(T2I, json=body).json()["id"] for body in bodies]
    wait_for(lambda: len(sandbox.ledger()["charges"]) == 5)
    ledger = sandbox.ledger()
    charged = {
        c["task_id"]: (c["model"], c["resolution"], c["amount_cents"]) for c in ledger["charges"]
    }
    assert charged == {
        ids[0]: (PRO, "1k", 5),
        ids[1]: (PRO, "2k", 7),
        ids[2]: (FLEX, "1k", 14),
        ids[3]: (FLEX, "2k", 24),
        ids[4]: (MAX, "1k", 16),  # the sandbox's documented placeholder
    }
    assert ledger["balance_cents"] == 10_000 - 66
    assert ledger["reserved_cents"] == 0
    failed = api.get(f"{T2I}/{ids[5]}").json()
    assert failed["status"] == "failed" and "usage" not in failed
    balance = api.get("/api/v1/me/balance").json()
    assert balance == {
        "balance_cents": 9_934,
        "paid_balance_cents": 9_934,
        "bonus_balance_cents": 0,
        "spent_cents_today": 66,
        "spent_cents_total": 66,
    }


def test_max_price_is_configurable(api: httpx.Client, sandbox: Any) -> None:
    sandbox.configure(prices={"flux-2-max-text-to-image": 20})
    body = {"model": MAX, "prompt": "max [sandbox:seconds=0]", "aspect_ratio": "1:1"}
    task_id = api.post(T2I, json=body).json()["id"]
    assert wait_done(api, f"{T2I}/{task_id}")["usage"]["cost"] == 0.2
    assert sandbox.ledger()["charges"][0]["amount_cents"] == 20


def test_a_create_the_balance_cannot_cover_is_402(fluxclaw_sandbox_factory: Any) -> None:
    sandbox = fluxclaw_sandbox_factory(balance_usd=0.10)
    with api_client(sandbox) as api:
        flex = api.post(T2I, json={"model": FLEX, "prompt": "too dear"})
        assert flex.status_code == 402
        assert flex.json()["error"]["code"] == "insufficient_credits"
        slow = {"model": PRO, "prompt": "reserved [sandbox:seconds=30]"}
        assert api.post(T2I, json=slow).status_code == 200
        assert api.post(T2I, json={**slow, "prompt": "second [sandbox:seconds=30]"}).is_success
        third = api.post(T2I, json={**slow, "prompt": "third [sandbox:seconds=30]"})
        assert third.status_code == 402  # 10 cents, both reserved by unfinished tasks
    assert len(sandbox.tasks()) == 2


def test_401_without_a_key_and_with_a_wrong_one(api: httpx.Client, sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.base_url, trust_env=False) as anonymous:
        for answer in (
            anonymous.post(T2I, json=BODY),
            anonymous.get("/api/v1/me"),
            anonymous.get("/api/v1/me", headers={"Authorization": "Bearer"}),
            anonymous.get("/api/v1/me", headers={"Authorization": "Basic abc"}),
            anonymous.get("/api/v1/me", headers={"Authorization": "Bearer sk-wrong"}),
        ):
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthorized"
    assert api.get("/api/v1/me").status_code == 200


def test_without_api_key_option_any_non_empty_key_is_accepted(
    fluxclaw_sandbox_factory: Any,
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=None)
    with api_client(sandbox, "anything-at-all") as api:
        assert api.get("/api/v1/me").status_code == 200
    with httpx.Client(base_url=sandbox.base_url, trust_env=False) as anonymous:
        assert anonymous.get("/api/v1/me").status_code == 401


def test_price_schedules_with_etag_and_304(sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.base_url, trust_env=False) as anonymous:
        answer = anonymous.get("/api/v1/price_schedules", params={"service": "flux_2"})
        assert answer.status_code == 200
        rows = answer.json()["price_schedules"]
        assert len(rows) == 6
        pro = next(r for r in rows if r["model"] == PRO)
        assert pro["unit_price_cents"] == 5
        assert pro["billing_config"] == {
            "key": "output_resolution",
            "overrides": {"1k": 5, "2k": 7},
        }
        etag = answer.headers["ETag"]
        assert etag.startswith('"')
        again = anonymous.get(
            "/api/v1/price_schedules", params={"service": "flux_2"}, headers={"If-None-Match": etag}
        )
        assert again.status_code == 304 and again.headers["ETag"] == etag
        only = anonymous.get(
            "/api/v1/price_schedules",
            params={"action": "remix_image", "model": FLEX.replace("text-to-image", "remix-image")},
        )
        assert [r["model"] for r in only.json()["price_schedules"]] == ["flux-2-flex-remix-image"]
        sandbox.configure(prices={"pro": {"1k": 6, "2k": 8}})
        changed = anonymous.get(
            "/api/v1/price_schedules", params={"service": "flux_2"}, headers={"If-None-Match": etag}
        )
        assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_price_quotes(sandbox: Any) -> None:
    with httpx.Client(base_url=sandbox.base_url, trust_env=False) as anonymous:
        quote = anonymous.post(
            "/api/v1/price_quotes",
            json={"model": FLEX, "prompt": "a quote", "output_resolution": "2k"},
        )
        assert quote.status_code == 200
        body = quote.json()["price_quote"]
        assert body["reservation_amount_cents"] == 24 and body["estimate_basis"] == "exact"
        assert (body["service"], body["action"], body["model"]) == ("flux_2", "text_to_image", FLEX)
        bad = anonymous.post("/api/v1/price_quotes", json={"model": PRO, "prompt": "x"})
        assert bad.status_code == 422 and "prompt" in bad.json()["errors"]


def test_me(api: httpx.Client) -> None:
    me = api.get("/api/v1/me").json()
    assert set(me) == {"id", "name", "email", "account"}
    assert set(me["account"]) == {"id", "name"}
