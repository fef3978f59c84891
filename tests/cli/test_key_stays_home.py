"""The key goes to the API base in its header and nowhere else: a prompt, a source URL or a
batch row's name that holds it is refused before anything is sent, and the refusal does not
echo it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxclaw import contract

from .conftest import KEY, Run, history_rows, one_line_error


def test_a_key_pasted_into_a_request_is_refused_before_sending(
    run: Run, api: dict[str, str], sandbox: Any, tmp_path: Path
) -> None:
    cases = [
        ["generate", f"a poster that says {KEY} in neon"],
        ["remix", "make it snow", "-i", f"https://example.com/img.png?token={KEY}"],
        ["generate", "a lamp", "--callback-url", f"https://hooks.example/{KEY}"],
    ]
    for args in cases:
        done = run(*args)
        assert done.returncode == contract.EXIT_INVALID, (args, done.stderr)
        line = one_line_error(done.stderr)
        assert "holds your RunAPI key" in line
        assert KEY not in done.stderr + done.stdout
    rows = [{"prompt": "a teapot", "name": f"teapot-{KEY}"}]
    (tmp_path / "work" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch = run("batch", "rows.jsonl", "-o", "out", "--json")
    assert batch.returncode == contract.EXIT_INVALID and KEY not in batch.stderr + batch.stdout
    assert "holds your RunAPI key" in batch.stderr
    assert [r for r in sandbox.requests() if r["method"] == "POST"] == []
    assert all(KEY not in json.dumps(row) for row in history_rows(api))


def test_plain_http_to_another_machine_needs_an_explicit_yes(run: Run, api: dict[str, str]) -> None:
    import warnings

    import pytest

    from fluxclaw import Client
    from fluxclaw._core import InsecureBaseWarning
    from fluxclaw.errors import ValidationError

    # Refused before any connection (192.0.2.1 is a documentation address: nothing is there).
    done = run("generate", "a lamp", "--base-url", "http://192.0.2.1:8080")
    assert done.returncode == contract.EXIT_INVALID
    assert "clear text" in one_line_error(done.stderr) and "--allow-http" in done.stderr
    for elsewhere in ("http://192.0.2.1:8080", "http://loopback", "http://127.0.0.1.nip.io"):
        with pytest.raises(ValidationError, match="clear text"):
            Client(api_key=KEY, base_url=elsewhere)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Client(api_key=KEY, base_url="http://192.0.2.1:8080", allow_http=True).close()
        Client(api_key=KEY, base_url="http://localhost:9").close()  # loopback: no warning
    assert [w.category for w in seen] == [InsecureBaseWarning]


def test_a_config_file_others_can_write_or_own_is_refused(
    run: Run, api: dict[str, str], sandbox: Any
) -> None:
    import os

    config = Path(api["FLUXCLAW_CONFIG"])
    assert run("config", "--base-url", sandbox.base_url).returncode == 0
    assert run("generate", "a lamp").returncode == 0
    os.chmod(config, 0o666)
    refused = run("generate", "a lamp")
    assert refused.returncode == contract.EXIT_INVALID
    assert f"chmod 600 {config}" in one_line_error(refused.stderr)
    os.chmod(config, 0o600)
    if os.getuid() == 0:  # as root (CI), hand it to another user
        os.chown(config, 65534, 65534)
        other = run("generate", "a lamp")
        assert other.returncode == contract.EXIT_INVALID
        assert "belongs to another user" in one_line_error(other.stderr)
    assert len(sandbox.ledger()["charges"]) == 1
