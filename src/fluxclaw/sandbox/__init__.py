"""A local RunAPI-compatible Flux 2 server: the contract served offline, with faults on demand.

    from fluxclaw.sandbox import SandboxServer
    with SandboxServer(speed=10) as sandbox:
        print(sandbox.base_url)

It depends on fluxclaw.contract only (never on the client), so it can check the client honestly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluxclaw.sandbox.server import SandboxServer
    from fluxclaw.sandbox.state import SandboxState

__all__ = ["SandboxServer", "SandboxState"]


def __getattr__(name: str) -> Any:
    if name == "SandboxServer":
        from fluxclaw.sandbox.server import SandboxServer

        return SandboxServer
    if name == "SandboxState":
        from fluxclaw.sandbox.state import SandboxState

        return SandboxState
    raise AttributeError(f"module 'fluxclaw.sandbox' has no attribute {name!r}")
