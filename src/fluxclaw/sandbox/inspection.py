"""Inspection routes under /_sandbox/: the request log, ledger, tasks, live config and reset,
and the root certificate that signed images verify against (/_sandbox/c2pa/ca.pem).

They are how a test checks what its client did (and changes faults or speed mid-run) over HTTP,
as a test in another process would; the middleware neither logs nor checks them.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fluxclaw import credentials
from fluxclaw.sandbox.responses import coded_error, json_body, json_response, validation_error
from fluxclaw.sandbox.state import ConfigError, SandboxState


class _Inspection:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def requests(self, request: Request) -> Response:
        return json_response({"requests": list(self.state.log)})

    async def ledger(self, request: Request) -> Response:
        state = self.state
        return json_response(
            {
                "balance_cents": state.balance_cents,
                "reserved_cents": state.reserved_cents,
                "spent_cents": state.spent_cents,
                "charges": state.charges,
            }
        )

    async def tasks(self, request: Request) -> Response:
        state, now = self.state, time.time()
        for task in state.tasks.values():
            state.status(task, now)  # settles the tasks that are due, as a status poll would
        return json_response({"tasks": [task.to_dict(now) for task in state.tasks.values()]})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            if isinstance(body, Response):
                return body
            try:
                self.state.configure(body)
            except ConfigError as error:
                return validation_error({error.field: [str(error)]})
        return json_response({"config": self.state.config.to_dict()})

    async def c2pa_ca(self, request: Request) -> Response:
        """The test CA's root, PEM: a verifier's trust anchor for the sandbox's signed images."""
        try:
            pem = await asyncio.to_thread(lambda: self.state.signer.ca_pem)
        except credentials.CredentialsUnavailableError as error:
            return coded_error(501, "c2pa_unavailable", str(error))
        return Response(pem, 200, media_type="application/x-pem-file")

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        if self.state.on_new_task is not None:
            self.state.on_new_task()
        return json_response({"reset": True})


async def root(request: Request) -> Response:
    return json_response(
        {
            "service": "fluxclaw sandbox",
            "contract": "RunAPI Flux 2 (see fluxclaw.contract)",
            "inspection": [
                "/_sandbox/requests",
                "/_sandbox/ledger",
                "/_sandbox/tasks",
                "/_sandbox/c2pa/ca.pem",
            ],
        }
    )


def routes(state: SandboxState) -> list[Route]:
    inspection = _Inspection(state)
    return [
        Route("/_sandbox/requests", inspection.requests),
        Route("/_sandbox/ledger", inspection.ledger),
        Route("/_sandbox/tasks", inspection.tasks),
        Route("/_sandbox/config", inspection.config, methods=["GET", "POST"]),
        Route("/_sandbox/reset", inspection.reset, methods=["POST"]),
        Route("/_sandbox/c2pa/ca.pem", inspection.c2pa_ca),
        Route("/", root),
    ]
