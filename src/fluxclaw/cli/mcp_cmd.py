"""`fluxclaw mcp`: serve the generate/remix/status/estimate_price/balance tools over stdio.

stdout is the MCP channel, so everything human-readable (the sandbox banner, logs) goes to
stderr; the key is resolved like every other command's and never logged.
"""

from __future__ import annotations

import logging

import click

from fluxclaw import contract
from fluxclaw.cli.common import connection_options, fail, handle_errors
from fluxclaw.config import AGENT_OUTPUT_DIR, AGENT_WAIT_TIMEOUT


@click.command()
@click.option(
    "--output-dir",
    metavar="DIR",
    default=AGENT_OUTPUT_DIR,
    show_default=True,
    help="Folder the images are saved into (relative to the working directory).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=AGENT_WAIT_TIMEOUT,
    show_default=True,
    help="Seconds a tool waits for a task before answering with its id (resumable).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Serve against a sandbox started in-process (no key, no cost).",
)
@connection_options
@handle_errors
def command(
    output_dir: str,
    timeout: float,
    sandbox: bool,
    api_key: str | None,
    base_url: str | None,
    debug: bool,
) -> None:
    """Serve fluxclaw as an MCP server over stdio (for OpenClaw, Claude and other MCP clients)."""
    import anyio

    from fluxclaw.cli.common import endpoint

    try:
        from fluxclaw.mcp_server import serve
    except ImportError:
        fail(
            "fluxclaw mcp needs the MCP SDK: pip install 'fluxclaw[mcp]'",
            contract.EXIT_OTHER,
        )

    from fluxclaw.history import History

    with endpoint(api_key, base_url, sandbox=sandbox, debug=debug) as (key, url, poll):
        _log_to_stderr(debug)
        anyio.run(
            lambda: serve(
                key,
                url,
                poll=poll,
                output_dir=output_dir,
                timeout=timeout,
                history=History(),
                sandbox=sandbox,
            ),
        )


def _log_to_stderr(debug: bool) -> None:
    """One stderr handler for fluxclaw's loggers, with the key scrubbed."""
    from fluxclaw.redaction import log_to_stderr

    log_to_stderr("fluxclaw: %(message)s", logging.DEBUG if debug else logging.INFO)
    logging.getLogger("fluxclaw").propagate = False  # the SDK's root handler would print twice
