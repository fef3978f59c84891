"""A local RunAPI-compatible Flux 2 server: the contract served offline, with faults on demand.

    from fluxclaw.sandbox import SandboxServer
    with SandboxServer(speed=10) as sandbox:
        print(sandbox.base_url)

It depends on fluxclaw.contract only (never on the client), so it can check the client honestly.
Its server (starlette and uvicorn) is the `fluxclaw[sandbox]` extra; `available()` says whether
it is installed, and every door that starts a sandbox says how to install it when it is not.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

INSTALL = "pip install 'fluxclaw[sandbox]'"


def available() -> bool:
    """Whether the sandbox's server libraries are installed."""
    return all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn"))


def missing(what: str) -> str:
    """The one line a door shows when the extra is not installed."""
    return f"{what} needs the sandbox extra (starlette, uvicorn): {INSTALL}"


if TYPE_CHECKING:
    from fluxclaw.sandbox.server import SandboxServer
    from fluxclaw.sandbox.state import SandboxState

__all__ = ["INSTALL", "SandboxServer", "SandboxState", "available", "missing"]


def __getattr__(name: str) -> Any:
    if name == "SandboxServer":
        from fluxclaw.sandbox.server import SandboxServer

        return SandboxServer
    if name == "SandboxState":
        from fluxclaw.sandbox.state import SandboxState

        return SandboxState
    raise AttributeError(f"module 'fluxclaw.sandbox' has no attribute {name!r}")
