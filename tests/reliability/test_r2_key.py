"""Round 2, the key stays home: it goes to the API base in its header and nowhere else. A prompt,
a source URL, a callback URL or a batch row's name that holds it is refused before anything is
sent, through every door, and the refusal does not echo it; a short (sandbox) key is never
matched inside text; plain http to another machine needs an explicit yes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import Client, contract
from fluxclaw._core import InsecureBaseWarning
from fluxclaw.errors import ValidationError
from tests.reliability.round2 import (
    KEY,
    cli,
    env_for,
    mcp,
    mcp_start,
    no_key_in,
    one_error,
)

REFUSED = "holds your RunAPI key"
ELSEWHERE = "http://192.0.2.1:8080"  # a documentation address: nothing is there
PASTED = {
    "prompt": {"prompt": f"a poster that says {KEY} in neon"},
    "source_url": {
        "prompt": "make it snow",
        "images": [f"https://example.com/img.png?token={KEY}"],
    },
    "callback_url": {"prompt": "a lamp", "callback_url": f"https://hooks.example/{KEY}"},
}


def _posts(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST")


def _cli_args(where: str) -> list[str]:
    asked = PASTED[where]
    if where == "source_url":
        return ["remix", asked["prompt"], "-i", asked["images"][0]]
    args = ["generate", asked["prompt"]]
    return [*args, "--callback-url", asked["callback_url"]] if "callback_url" in asked else args


@pytest.mark.round2("the key stays home")
@pytest.mark.parametrize("door", ["library", "cli", "mcp", "batch"])
@pytest.mark.parametrize("where", list(PASTED))
def test_a_pasted_key_is_refused_before_sending_and_not_echoed(
    where: str, door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A prompt, source URL or callback URL that holds the key is refused before anything is
    sent, and the refusal does not echo it"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    env = env_for(tmp_path, sandbox.base_url)
    asked = PASTED[where]
    said: list[str] = []
    if door == "library":
        client = Client(api_key=KEY, base_url=sandbox.base_url)
        with client, pytest.raises(ValidationError, match=REFUSED) as refused:
            if where == "source_url":
                client.remix(asked["prompt"], asked["images"])
            else:
                client.generate(asked["prompt"], callback_url=asked.get("callback_url"))
        said += [str(refused.value), repr(refused.value)]
    elif door == "cli":
        done = cli(tmp_path, env, *_cli_args(where), "-o", "out", "--json")
        assert done.returncode == contract.EXIT_INVALID, done.stderr
        assert REFUSED in one_error(done.stderr)
        said += [done.stdout, done.stderr]
    elif door == "mcp":
        tool = "remix" if where == "source_url" else "generate"
        arguments: dict[str, Any] = {"prompt": asked["prompt"]}
        if where == "source_url":
            arguments["images"] = asked["images"]
        if where == "callback_url":
            pytest.skip("the MCP tools take no callback URL")
        [(is_error, text)] = mcp(tmp_path, env, [(tool, arguments)])
        assert is_error and REFUSED in text
        said.append(text)
    else:
        if where == "callback_url":
            pytest.skip("a batch row has no callback URL (the option's is checked as the CLI's)")
        row = {k: v for k, v in asked.items() if k != "callback_url"}
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "rows.jsonl").write_text(json.dumps(row) + "\n")
        done = cli(tmp_path, env, "batch", "rows.jsonl", "-o", "out", "--json")
        assert done.returncode == contract.EXIT_INVALID, done.stderr
        assert REFUSED in done.stderr
        said += [done.stdout, done.stderr]
    assert _posts(sandbox) == 0
    no_key_in(tmp_path, *said)


@pytest.mark.round2("the key stays home")
def test_a_batch_rows_name_that_holds_the_key_is_refused(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A batch row's name (a file name others may read) that holds the key is refused"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    (tmp_path / "work").mkdir()
    row = {"prompt": "a teapot", "name": f"teapot-{KEY}"}
    (tmp_path / "work" / "rows.jsonl").write_text(json.dumps(row) + "\n")
    done = cli(tmp_path, env_for(tmp_path, sandbox.base_url), "batch", "rows.jsonl", "-o", "out")
    assert done.returncode == contract.EXIT_INVALID and REFUSED in done.stderr
    assert _posts(sandbox) == 0
    no_key_in(tmp_path, done.stdout, done.stderr)


@pytest.mark.round2("the key stays home")
@pytest.mark.parametrize("door", ["library", "cli"])
def test_a_short_sandbox_key_is_never_matched_inside_text(
    door: str, fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A short key ("anything", as the sandbox allows) inside a prompt is not a refusal"""
    sandbox = fluxclaw_sandbox_factory(api_key=None)
    prompt = "anything goes: a lamp, anything at all"
    if door == "library":
        with Client(api_key="anything", base_url=sandbox.base_url) as client:
            assert client.generate(prompt).images
    else:
        env = env_for(tmp_path, sandbox.base_url, RUNAPI_API_KEY="anything")
        done = cli(tmp_path, env, "generate", prompt, "-o", "out")
        assert done.returncode == 0, done.stderr
    assert _posts(sandbox) == 1
    assert sandbox.tasks()[0]["request"]["prompt"] == prompt


@pytest.mark.round2("the key stays home")
@pytest.mark.parametrize("door", ["library", "cli", "mcp", "batch"])
def test_plain_http_to_another_machine_needs_an_explicit_yes(door: str, tmp_path: Path) -> None:
    """A base URL that is not https and not loopback is refused unless the user opts in, and
    said on stderr each time when they do"""
    env = env_for(tmp_path, ELSEWHERE)
    if door == "library":
        for elsewhere in (ELSEWHERE, "http://loopback", "http://127.0.0.1.nip.io"):
            with pytest.raises(ValidationError, match="clear text"):
                Client(api_key=KEY, base_url=elsewhere)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            Client(api_key=KEY, base_url=ELSEWHERE, allow_http=True).close()
            Client(api_key=KEY, base_url="http://localhost:9").close()  # loopback: no warning
        assert [w.category for w in seen] == [InsecureBaseWarning]
        return
    if door == "mcp":
        done = mcp_start(tmp_path, env)
    elif door == "cli":
        done = cli(tmp_path, env, "generate", "a lamp", "-o", "out")
    else:
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "rows.jsonl").write_text('{"prompt": "a lamp"}\n')
        done = cli(tmp_path, env, "batch", "rows.jsonl", "-o", "out")
    assert done.returncode == contract.EXIT_INVALID
    line = one_error(done.stderr)
    assert "clear text" in line and "--allow-http" in line
    if door == "cli":  # with the yes, said on stderr (a prompt refused before any connection)
        done = cli(tmp_path, env, "generate", "x", "--allow-http")
        assert done.returncode == contract.EXIT_INVALID and "prompt has 1 characters" in done.stderr
        assert f"warning: sending the RunAPI key in clear text to {ELSEWHERE}" in done.stderr
