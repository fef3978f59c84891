"""One wait's state machine: what to ask, when, and what each answer means, from the poll
schedule (`polling.py`) and what the client has learned of this server's times (its stated
speed included: an answer that changes it re-plans the rest of the wait). `_flows.wait` drives
it; it does no I/O itself.
"""

from __future__ import annotations

import time

from fluxclaw import contract, errors
from fluxclaw._core import NO_SUCH_TASK, Core, HintSource, OnUpdate, resume_hint
from fluxclaw.deadline import Deadline
from fluxclaw.models import Result, Task, TaskStatus, failed_error, parse_task, result_from
from fluxclaw.polling import Plan, PollSchedule
from fluxclaw.transport import Reply


def waiter(
    core: Core,
    task: str | Task,
    action: contract.Action | None,
    timeout: float | None,
    on_update: OnUpdate | None,
    hints: HintSource | None,
    deadline: Deadline | None = None,
) -> Wait:
    """A wait for `task` (an id alone will do: the action is guessed, both are tried), by the
    job's `deadline`, else `timeout` seconds from now (the client's by default)."""
    handle = core.known(task, action)
    guessed = action is None and handle.request is None and not isinstance(task, Task)
    seconds = core.timeout if timeout is None else timeout
    if deadline is None or deadline.at is None:
        deadline = Deadline.after(seconds)
    return Wait(core, handle, deadline, seconds, on_update, hints, guessed)


class Wait:
    """One wait's state: what to ask next, when, and what each answer means."""

    def __init__(
        self,
        core: Core,
        task: Task,
        deadline: Deadline,
        timeout: float,
        on_update: OnUpdate | None,
        hints: HintSource | None,
        guessed_action: bool,
    ) -> None:
        self.core = core
        self.task = task
        self.action: contract.Action = task.action
        self.guessed = guessed_action
        self.on_update = on_update
        self.hints = hints
        self.timeout = timeout  # what the caller asked for, for messages
        now = time.monotonic()
        self.deadline = deadline if deadline.at is not None else Deadline.after(timeout)
        ends = self.deadline.at if self.deadline.at is not None else now + timeout
        request = task.request
        self.key = (request.model, request.resolution) if request else None
        # Resumed, or replayed after it ended: it may have finished long ago, so ask at once.
        self.at_once = task.started is None or task.status in contract.TERMINAL_STATUSES
        self.scale = core.stats.time_scale
        self.schedule = PollSchedule(
            core.poll,
            self.plan(),
            started=task.started if task.started is not None else now,
            deadline=ends,
            clock=time.monotonic,
        )
        self.retry_after: float | None = None
        self.hint_spent = False
        # Only a wait that saw its task from creation, and polled by the schedule rather than
        # on a callback, teaches the poll schedule anything.
        fresh = task.started is not None and not task.replayed and hints is None
        self.learning = (
            self.key if fresh and task.status not in contract.TERMINAL_STATUSES else None
        )
        self.call = core.status_call(task.id, self.action)

    def plan(self) -> Plan:
        request = self.task.request
        plan = self.core.stats.plan(
            self.key or ("", ""),
            request.family if request else None,
            request.resolution if request else contract.DEFAULT_RESOLUTION,
        )
        return plan._replace(first=0.0, polls=()) if self.at_once else plan

    @property
    def listening(self) -> bool:
        """Whether to wait for a callback rather than sleep. Once a callback has woken us and
        the GET did not confirm it, it is spent: back to the poll schedule, never a busy loop."""
        return self.hints is not None and not self.hint_spent

    def delay(self) -> float:
        if self.listening and not getattr(self.hints, "receiving", True):
            # The receiver could not take every connection: our callback may be lost, so this
            # wait keeps to the poll schedule from here on (a hint source may lack `receiving`).
            self.hint_spent = True
        if self.listening:
            # A callback will wake us; poll only in case it never comes: first when the task
            # is late by the poll schedule's measure, then rarely.
            now = time.monotonic()
            if self.schedule.polls == 0:
                fallback = self.schedule.started + self.schedule.plan.late_after - now
            else:
                fallback = max(self.schedule.plan.cap * 4, self.core.poll.max_interval)
            return max(0.0, min(fallback, self.deadline.left() or 0.0))
        return self.schedule.delay(self.retry_after)

    def not_found(self, error: errors.NotFoundError) -> bool:
        """A resumed id may belong to the other action: try it once before giving up."""
        if self.guessed and self.action == "text_to_image":
            self.action = "remix_image"
            self.call = self.core.status_call(self.task.id, self.action)
            self.guessed = False
            return True
        return False

    def observe(self, reply: Reply) -> tuple[TaskStatus, Result | None]:
        """Read one status answer: a result, an error, or (None) poll again."""
        started = self.task.started
        elapsed = None if started is None else time.monotonic() - started
        status = parse_task(
            reply.body,
            self.action,
            request=self.task.request,
            request_id=reply.request_id,
            retry_after=reply.retry_after,
            expected_id=self.task.id,
            elapsed=elapsed,
            polls=self.schedule.polls + 1,
        )
        self.schedule.polled(status.done)
        self.retry_after = reply.retry_after
        if self.core.stats.time_scale != self.scale:
            # The server stated another speed (`_flows.send` heard it): re-plan what is left.
            self.scale = self.core.stats.time_scale
            self.schedule.plan = self.plan()
        completed = status.status == "completed"
        if self.learning and status.status != "failed":
            stats = self.core.stats
            if self.schedule.polls == 1 and self.schedule.first_at is not None:
                stats.first_poll(self.learning, self.schedule.first_at, completed)
            if completed:
                stats.record(
                    self.learning, self.schedule.finished_after(), self.schedule.bracket_width()
                )
        if completed:
            return status, result_from(status, self.task)
        return status, None

    def after_update(self, status: TaskStatus) -> None:
        if status.status == "failed":
            raise failed_error(status)
        if self.schedule.expired():
            raise errors.TaskTimeoutError(
                f"task {self.task.id} is still {status.status} after {self.timeout:.3g}s; "
                f"it may still finish: {resume_hint(self.task.id)}",
                task_id=self.task.id,
                request_id=status.request_id,
            )

    def annotate(self, error: errors.FluxclawError) -> errors.FluxclawError:
        if isinstance(error, errors.RequestTimeoutError) and self.deadline.passed():
            # The wait's own deadline cut the request short: the task is not known to be lost.
            return errors.TaskTimeoutError(
                f"task {self.task.id} did not finish within {self.timeout:.3g}s (the last status "
                f"request was cut off); it may still finish: {resume_hint(self.task.id)}",
                task_id=self.task.id,
            )
        if error.task_id is None:
            error.task_id = self.task.id
        if isinstance(error, errors.NotFoundError):  # no such task: nothing will ever finish
            error.hint = error.hint or NO_SUCH_TASK
            return error
        if error.hint is None and not isinstance(error, errors.TaskFailedError):
            error.hint = f"The task may still finish: {resume_hint(self.task.id)}."
        return error
