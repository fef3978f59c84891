"""One Deadline per job: made once, carried by every step, each step's own limit taken
against it."""

from __future__ import annotations

import time

import pytest

from fluxclaw.deadline import Deadline
from fluxclaw.errors import ValidationError


def test_a_deadline_bounds_each_step_and_a_save_keeps_its_floor() -> None:
    job = Deadline.after(2.0)
    assert job.at is not None and not job.passed()
    left = job.left()
    assert left is not None and 1.5 < left <= 2.0
    # A request may take 60 s on its own, but not past the job's deadline.
    assert job.within(60.0) == job.at
    assert job.within(0.5) < job.at
    # A save after the wait used all the time still gets its floor.
    spent = Deadline(time.monotonic() - 1)
    assert spent.passed() and spent.left() == 0.0
    floor = spent.at_least(3.0)
    assert floor.at is not None and floor.at > time.monotonic() + 2.5
    assert Deadline().left() is None and not Deadline().passed()
    for bad in (0, -1.0):
        with pytest.raises(ValidationError, match="must be more than 0 seconds"):
            Deadline.after(bad)
