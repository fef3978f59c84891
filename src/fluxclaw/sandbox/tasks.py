"""Task routes: create a task, read its status (RunAPI's paths and the product page's /v1 ones).

Status is computed from the task's times when asked (see state.py), so a poll is a dictionary
lookup and one json.dumps.
"""

from __future__ import annotations

import time
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fluxclaw import contract
from fluxclaw.sandbox.callbacks import is_loopback_url
from fluxclaw.sandbox.responses import (
    Handler,
    base_url,
    coded_error,
    dumps,
    json_body,
    not_found,
    request_errors,
    seconds_header,
    validation_error,
)
from fluxclaw.sandbox.state import IdempotencyConflict, InsufficientCredits, SandboxState, Task

CREATE_PATHS: Final[dict[str, contract.Action]] = {
    **{contract.create_path(action): action for action in contract.ACTIONS},
    **{contract.page_create_path(action): action for action in contract.ACTIONS},
}


class _Tasks:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def answer(self, task: Task, body: dict[str, Any], status: str) -> Response:
        headers = {contract.H_TASK_ID: task.id}
        if self.state.config.retry_after and status not in contract.TERMINAL_STATUSES:
            headers[contract.H_RETRY_AFTER] = seconds_header(task.finished_at - time.time())
        return Response(dumps(body), 200, headers, "application/json")

    async def create(self, request: Request) -> Response:
        action = CREATE_PATHS[request.url.path]
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        errors = request_errors(action, body)
        callback = body.get("callback_url")
        if (
            "callback_url" not in errors
            and contract.is_present(callback)
            and not is_loopback_url(str(callback))
        ):
            errors["callback_url"] = [
                f"callback_url={callback} is refused: the sandbox only calls loopback hosts "
                "(127.0.0.1, ::1, localhost)."
            ]
        if errors:
            return validation_error(errors)

        state = self.state
        api_key: str = request.scope.get("fluxclaw.api_key", "")
        key = request.headers.get(contract.H_IDEMPOTENCY_KEY)
        if key is not None:
            try:
                replay = state.find_replay(api_key, key, action, body)
            except IdempotencyConflict as conflict:
                return coded_error(409, "idempotency_conflict", str(conflict))
            if replay is not None:
                status = state.status(replay, time.time())
                _note_task(request, replay)
                return self.answer(
                    replay, {**replay.envelope(status), "task_replayed": True}, status
                )
        try:
            task = state.create_task(
                action, body, api_key=api_key, base_url=base_url(request), idempotency_key=key
            )
        except InsufficientCredits as error:
            return coded_error(402, "insufficient_credits", str(error))
        _note_task(request, task)
        status = state.status(task, time.time())
        return self.answer(task, task.envelope(status), status)

    def status(self, action: contract.Action | None) -> Handler:
        """The status route for one action's path, or for any task's (action None)."""
        state = self.state

        async def status(request: Request) -> Response:
            task = state.tasks.get(request.path_params["task_id"])
            if task is None or (action is not None and task.action != action):
                return not_found()
            current = state.status(task, time.time())
            return self.answer(task, task.envelope(current), current)

        return status


def _note_task(request: Request, task: Task) -> None:
    """Name the task in the request log, so that a test can tie a request to what it made."""
    entry = request.scope.get("fluxclaw.log")
    if entry is not None:
        entry["task_id"] = task.id


def routes(state: SandboxState) -> list[Route]:
    tasks = _Tasks(state)
    return [
        *(Route(path, tasks.create, methods=["POST"]) for path in CREATE_PATHS),
        *(
            Route(f"{contract.create_path(action)}/{{task_id}}", tasks.status(action))
            for action in contract.ACTIONS
        ),
        Route(contract.PAGE_STATUS_PATH, tasks.status(None)),
    ]
