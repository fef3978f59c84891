"""Runs the sandbox in a background thread (tests, `--sandbox` modes) or the foreground (CLI).

The bound socket is `fluxclaw._serving`'s and the uvicorn thread `sandbox.serving`'s; this adds
the app, the protocol that lets a fault drop the connection, and the signal handling of
`fluxclaw sandbox`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fluxclaw import contract, credentials
from fluxclaw._serving import GRACE_SECONDS, Served
from fluxclaw.sandbox import faults as faults_mod
from fluxclaw.sandbox import images
from fluxclaw.sandbox.app import ABORT_EXTENSION, create_app
from fluxclaw.sandbox.serving import UvicornThread
from fluxclaw.sandbox.state import MAX_PRICE_CENTS, SandboxConfig, SandboxState

START_TIMEOUT: Final = 15.0


class AbortableProtocol(HttpToolsProtocol):
    """Hands the app a way to drop the TCP connection, which ASGI itself cannot express.

    The scope dict built here is the one the request cycle passes to the app, so an entry added
    after the parent's on_headers_complete reaches the app (which then calls it for the `reset`
    and `drop` faults).
    """

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = self.transport.abort


class SandboxServer(Served):
    """A RunAPI-compatible Flux 2 server on loopback; see README "Sandbox" for what it serves.

    `image_format` (png, jpeg, webp) and `c2pa` (sign each image with C2PA Content Credentials
    from a test CA made at start; needs the c2pa extra) are every task's defaults, which a
    prompt's `[sandbox:format=X]` and `[sandbox:c2pa]` / `[sandbox:c2pa=off]` override.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        faults: str | Mapping[str, Any] | None = None,
        api_key: str | None = None,
        balance_usd: float = 100.0,
        rate_limit: float | None = None,
        seed: int = 0,
        retry_after: bool = False,
        max_price_cents: int = MAX_PRICE_CENTS,
        image_format: str = "png",
        c2pa: bool = False,
    ) -> None:
        if c2pa:
            credentials.require("the sandbox's signed images (c2pa=True)")
        low, high = contract.SANDBOX_SPEEDS
        if not low <= speed <= high:  # the range a client adopts from the speed header
            raise ValueError(f"speed={speed} must be from {low:g} to {high:g}.")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit={rate_limit} must be above 0.")
        if balance_usd < 0:
            raise ValueError(f"balance_usd={balance_usd} must not be negative.")
        config = SandboxConfig(
            speed=float(speed),
            faults=faults_mod.parse(faults),
            rate_limit=None if rate_limit is None else float(rate_limit),
            retry_after=retry_after,
            max_price_cents=max_price_cents,
            image_format=images.image_format(image_format),
            c2pa=c2pa,
        )
        self.host = host
        self.port = port
        self.state = SandboxState(
            config=config,
            api_key=api_key or None,
            balance_cents=round(balance_usd * 100),
            seed=seed,
        )

    @property
    def c2pa_ca(self) -> Path:
        """The PEM root certificate signed images verify against (made now if not yet)."""
        return self.state.signer.ca().ca_cert

    def start(self) -> str:
        """Serve in a background thread; returns the base URL once connections are accepted."""
        if self.state.config.c2pa:
            self.state.signer.ca()  # the test CA exists before the first image is asked for
        config = uvicorn.Config(
            create_app(self.state),
            http=AbortableProtocol,
            loop="auto",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
            timeout_keep_alive=30,
        )
        return self._serve(
            lambda sock, name: UvicornThread(config, sock, name), "sandbox", START_TIMEOUT
        )

    def stop(self) -> None:
        super().stop()
        self.state.signer.close()

    def serve_forever(self) -> None:
        """Print the base URL as the first stdout line once serving; stop on SIGINT or SIGTERM."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            sys.stdout.write(self.base_url + "\n")
            sys.stdout.flush()
            runner = self._runner
            while not stop.wait(0.5):
                if runner is None or not runner.alive:
                    break
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __repr__(self) -> str:
        where = self.base_url if self._runner else "not started"
        return f"SandboxServer({where}, speed={self.state.config.speed:g})"
