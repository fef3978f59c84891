"""Batches: thousands of image requests from a JSON Lines or CSV file, resumable after a crash,
on a budget, with a manifest and a gallery. `run_batch` is the library door; `fluxclaw batch`
the command-line one; both are thin layers over the job engine (`fluxclaw.jobs`)."""

from fluxclaw.batch.gallery import write_gallery
from fluxclaw.batch.plan import Defaults, Plan, plan_batch
from fluxclaw.batch.rows import BadFile, BadRow, Row, RowFile, iter_rows, read_rows
from fluxclaw.batch.runner import BatchResult, Progress, run_batch

__all__ = [
    "BadFile",
    "BadRow",
    "BatchResult",
    "Defaults",
    "Plan",
    "Progress",
    "Row",
    "RowFile",
    "iter_rows",
    "plan_batch",
    "read_rows",
    "run_batch",
    "write_gallery",
]
