"""Money and account routes: price schedules, price quotes, the user and the balance.

Prices are the contract's, through the sandbox's overrides (state.price_for), so a client sees
the prices it will be charged; the schedules carry an ETag because clients cache them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fluxclaw import contract
from fluxclaw.sandbox.responses import (
    dumps,
    json_body,
    json_response,
    request_errors,
    validation_error,
)
from fluxclaw.sandbox.state import SandboxState


class _Account:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def schedules(self) -> list[dict[str, Any]]:
        rows = []
        for model in contract.MODELS.values():
            overrides = {
                res: self.state.price_for(model, res)
                for res in contract.resolutions_for(model.family)
            }
            row: dict[str, Any] = {
                "service": contract.SERVICE,
                "action": model.action,
                "model": model.id,
                "currency": "USD",
                "unit": "image",
                "unit_price_cents": overrides[contract.DEFAULT_RESOLUTION],
                "billing_config": {"key": "output_resolution", "overrides": overrides},
            }
            if contract.price_cents(model.family, contract.DEFAULT_RESOLUTION) is None:
                row["note"] = "sandbox placeholder: RunAPI's price for this model is unknown"
            rows.append(row)
        return rows

    async def price_schedules(self, request: Request) -> Response:
        query = request.query_params
        rows = [
            row
            for row in self.schedules()
            if all(
                not query.get(name) or row[name] == query[name]
                for name in ("service", "action", "model")
            )
        ]
        body = dumps({"price_schedules": rows})
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        wanted = request.headers.get("if-none-match")
        if wanted is not None:
            tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
            if etag in tags or "*" in tags:
                return Response(b"", 304, headers)
        return Response(body, 200, headers, "application/json")

    async def price_quote(self, request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        service = body.pop("service", contract.SERVICE)
        action = body.pop("action", None)
        model = contract.MODELS.get(str(body.get("model")))
        if service != contract.SERVICE:
            return validation_error({"service": [f"service must be {contract.SERVICE}."]})
        if action is None and model is not None:
            action = model.action
        if action not in contract.ACTIONS:
            return validation_error(
                {"action": [f"action must be one of: {', '.join(contract.ACTIONS)}."]}
            )
        errors = request_errors(action, body)
        if errors or model is None:
            return validation_error(errors)
        resolution = body.get("output_resolution")
        if not contract.is_present(resolution):
            resolution = contract.DEFAULT_RESOLUTION
        cents = self.state.price_for(model, str(resolution))
        known = contract.price_cents(model.family, str(resolution)) is not None
        return json_response(
            {
                "price_quote": {
                    "service": contract.SERVICE,
                    "action": action,
                    "model": model.id,
                    "output_resolution": resolution,
                    "currency": "USD",
                    "unit_price_cents": cents,
                    "quantity": 1,
                    "reservation_amount_cents": cents,
                    "estimate_basis": "exact" if known else "sandbox_placeholder",
                }
            }
        )

    async def balance(self, request: Request) -> Response:
        state = self.state
        return json_response(
            {
                "balance_cents": state.balance_cents,
                "paid_balance_cents": state.balance_cents,
                "bonus_balance_cents": 0,
                "spent_cents_today": state.spent_today_cents(),
                "spent_cents_total": state.spent_cents,
            }
        )


async def me(request: Request) -> Response:
    return json_response(
        {
            "id": "usr_sandbox",
            "name": "Sandbox User",
            "email": "sandbox@example.invalid",
            "account": {"id": "acct_sandbox", "name": "fluxclaw sandbox"},
        }
    )


def routes(state: SandboxState) -> list[Route]:
    account = _Account(state)
    return [
        Route(contract.PRICE_SCHEDULES_PATH, account.price_schedules),
        Route(contract.PRICE_QUOTES_PATH, account.price_quote, methods=["POST"]),
        Route(contract.ME_PATH, me),
        Route(contract.BALANCE_PATH, account.balance),
    ]
