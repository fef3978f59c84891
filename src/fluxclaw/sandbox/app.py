"""The sandbox's HTTP face: assembles the Starlette app from the route modules and the middleware.

Rules come from fluxclaw.contract only; each module here serves one job (see their docstrings).
"""

from __future__ import annotations

from starlette.applications import Starlette

from fluxclaw.sandbox import account, files, inspection, renders, tasks
from fluxclaw.sandbox.middleware import ABORT_EXTENSION, SandboxMiddleware
from fluxclaw.sandbox.responses import http_error
from fluxclaw.sandbox.scheduler import lifespan
from fluxclaw.sandbox.state import SandboxState

__all__ = ["ABORT_EXTENSION", "create_app"]


def create_app(state: SandboxState) -> Starlette:
    routes = [
        *tasks.routes(state),
        *files.routes(state),
        *account.routes(state),
        *renders.routes(state),
        *inspection.routes(state),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan(state),
        exception_handlers={404: http_error, 405: http_error},
    )
    app.add_middleware(SandboxMiddleware, state=state)
    app.state.sandbox = state
    return app
