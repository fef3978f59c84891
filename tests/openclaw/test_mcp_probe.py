"""`fluxclaw mcp --sandbox` as a real OpenClaw sees it: `openclaw mcp probe` lists its tools.

The probe starts the server over stdio, lists its capabilities and exits; the sandbox runs
in-process, so neither a key nor the network is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import VENV_BIN, OpenClaw

TOOLS = {"generate", "remix", "status", "estimate_price", "balance"}


def add_fluxclaw(openclaw: OpenClaw, tmp_path: Path) -> Path:
    workdir = tmp_path / "fluxclaw-cwd"  # the server's working directory: never the repo
    workdir.mkdir()
    server = {
        "command": str(VENV_BIN / "fluxclaw"),
        "args": ["mcp", "--sandbox"],
        "cwd": str(workdir),
        "env": {
            "FLUXCLAW_DATA_DIR": openclaw.env["FLUXCLAW_DATA_DIR"],
            "FLUXCLAW_CONFIG": openclaw.env["FLUXCLAW_CONFIG"],
        },
        "requestTimeoutMs": 300000,
        # The probe allows 5 s to initialize unless told; a loaded machine can take longer to
        # start Python, the SDK and a sandbox.
        "connectionTimeoutMs": 60000,
    }
    openclaw.configure({"mcp": {"servers": {"fluxclaw": server}}})
    return workdir


def test_probe_lists_the_five_tools(openclaw: OpenClaw, tmp_path: Path) -> None:
    workdir = add_fluxclaw(openclaw, tmp_path)
    done = openclaw.run("mcp", "probe", "fluxclaw", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["diagnostics"] == []
    server = report["servers"]["fluxclaw"]
    assert server["tools"] == len(TOOLS)
    assert server["requestTimeoutMs"] == 300000
    assert "mcp --sandbox" in server["launch"]
    # OpenClaw prefixes each tool with the server name and adds its own resources_*/prompts_*
    # helpers because the server also advertises resources and prompts.
    names = {tool.removeprefix("fluxclaw__") for tool in report["tools"]}
    helpers = {"resources_list", "resources_read", "prompts_list", "prompts_get"}
    assert names - helpers == TOOLS
    assert list(workdir.iterdir()) == []  # listing tools writes nothing


def test_doctor_accepts_the_server_and_probe_summarises_it(
    openclaw: OpenClaw, tmp_path: Path
) -> None:
    add_fluxclaw(openclaw, tmp_path)
    doctor = openclaw.run("mcp", "doctor", "fluxclaw", "--json")
    assert doctor.returncode == 0, doctor.stderr + doctor.stdout
    assert json.loads(doctor.stdout)["servers"] == [{"name": "fluxclaw", "ok": True, "issues": []}]

    probe = openclaw.run("mcp", "probe", "fluxclaw")
    assert probe.returncode == 0, probe.stderr + probe.stdout
    assert "fluxclaw: 5 tools, resources, prompts" in probe.stdout
