"""Bad input, drawn by hypothesis: whatever is wrong (model, ratio, resolution, prompt length,
timeout), the library raises ValidationError and the CLI exits 4 with one line, no traceback,
and neither sends a single request (checked in the sandbox's own log)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxclaw import Client, PollPolicy, ValidationError, contract
from tests.reliability import report

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


def _model_refused(name: str) -> bool:
    try:
        contract.resolve_model(name, "text_to_image")
    except ValueError:
        return True
    return False


def _norm(text: str) -> str:
    return text.strip().lower()


# Blank values mean "the default", which is fine, so they are not drawn.
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
).filter(str.strip)
bad_model = text.filter(_model_refused)
bad_ratio = text.filter(lambda r: _norm(r) not in contract.ASPECT_RATIOS and _norm(r) != "auto")
bad_resolution = text.filter(lambda r: _norm(r) not in contract.RESOLUTIONS and _norm(r) != "")
short_prompt = st.text(max_size=contract.PROMPT_MIN - 1).filter(lambda p: "\x00" not in p)
long_prompt = st.integers(contract.PROMPT_MAX + 1, contract.PROMPT_MAX + 50).map(lambda n: "a" * n)
AREA = "bad input (hypothesis: library calls and CLI command lines)"
GOOD = {"prompt": "a red bicycle by a wall", "model": "pro", "ratio": "1:1", "resolution": "1k"}


@st.composite
def bad_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A good request with one thing wrong (or Max at 2k, which the contract refuses)."""
    field = draw(st.sampled_from(["model", "ratio", "resolution", "prompt", "max2k", "timeout"]))
    request: dict[str, Any] = dict(GOOD)
    if field == "model":
        request["model"] = draw(bad_model)
    elif field == "ratio":
        request["ratio"] = draw(bad_ratio)
    elif field == "resolution":
        request["resolution"] = draw(bad_resolution)
    elif field == "prompt":
        request["prompt"] = draw(st.one_of(short_prompt, long_prompt))
    elif field == "max2k":
        request["model"], request["resolution"] = "max", "2k"
    else:
        request["timeout"] = draw(st.floats(max_value=0, allow_nan=False, allow_infinity=False))
    return request


def _creates(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST")


def test_library_refuses_bad_input_before_any_request(fluxclaw_sandbox: Any) -> None:
    @SETTINGS
    @given(bad_requests())
    def check(request: dict[str, Any]) -> None:
        before = _creates(fluxclaw_sandbox)
        with Client(
            api_key=fluxclaw_sandbox.api_key,
            base_url=fluxclaw_sandbox.base_url,
            poll=PollPolicy(time_scale=0.01),
        ) as client:
            options: dict[str, Any] = {}
            if "timeout" in request:
                options["timeout"] = request["timeout"]
            with pytest.raises(ValidationError):
                client.generate(
                    request["prompt"],
                    model=request["model"],
                    aspect_ratio=request["ratio"],
                    resolution=request["resolution"],
                    **options,
                )
        sent = _creates(fluxclaw_sandbox) != before
        report.record(AREA, f"library {request!r:.80}", [f"sent {request!r:.200}"] if sent else [])
        assert not sent

    check()


def test_cli_refuses_bad_input_with_exit_4(fluxclaw_sandbox: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAPI_", "FLUXCLAW_"))}
    env.update(
        HOME=str(tmp_path),
        FLUXCLAW_CONFIG=str(tmp_path / "config.json"),
        FLUXCLAW_DATA_DIR=str(tmp_path / "data"),
        RUNAPI_API_KEY=fluxclaw_sandbox.api_key,
    )

    @settings(SETTINGS, max_examples=30)
    @given(bad_requests())
    def check(request: dict[str, Any]) -> None:
        before = _creates(fluxclaw_sandbox)
        args = [FLUXCLAW, "generate", "--base-url", fluxclaw_sandbox.base_url, "-o", "out"]
        args += ["-m", request["model"], "--aspect-ratio", request["ratio"]]
        args += ["--resolution", request["resolution"]]
        if "timeout" in request:
            args += ["--timeout", repr(request["timeout"])]
        args += ["--", request["prompt"]]
        done = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        ok = (
            done.returncode == contract.EXIT_INVALID
            and len(lines) == 1
            and lines[0].startswith("error:")
            and "Traceback" not in done.stderr
            and _creates(fluxclaw_sandbox) == before
        )
        problem = f"{request!r:.150} -> exit {done.returncode}: {done.stderr[-200:]}"
        report.record(AREA, f"CLI {request!r:.80}", [] if ok else [problem])
        assert ok, problem

    check()
