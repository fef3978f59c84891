"""The API key never leaks: not in errors, reprs, logs or files; never sent to other origins."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from fluxclaw import AuthenticationError, FluxclawError

KEY = "sk-fluxclaw-LEAKCHECK-7f3a9c1e2b"


def test_the_key_never_appears_anywhere(
    fluxclaw_sandbox_factory: Any,
    make_client: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = fluxclaw_sandbox_factory(speed=100, api_key=KEY)
    client = make_client(sandbox)
    source = tmp_path / "in.png"
    PILImage.new("RGB", (32, 32), (1, 2, 3)).save(source)
    texts = [repr(client), str(client)]

    result = client.generate("a lighthouse, saved")
    client.save(result, tmp_path / "out")
    result.save(tmp_path / "out2", format="webp")
    remixed = client.remix("the same at night", [source])
    client.save(remixed, tmp_path / "out")
    texts += [repr(result), repr(remixed), str(result.to_dict())]

    failures: list[FluxclawError] = []
    for attempt in (
        lambda: client.generate("a refused thing [sandbox:fail]"),
        lambda: client.wait(client.submit_generate("slow [sandbox:seconds=3]").id, timeout=0.1),
        lambda: make_client(sandbox, api_key=KEY + "-wrong").balance(),
    ):
        with pytest.raises(FluxclawError) as caught:
            attempt()
        failures.append(caught.value)
    assert isinstance(failures[-1], AuthenticationError)
    for error in failures:
        texts += [str(error), repr(error), str(error.__cause__), str(error.__context__)]

    texts += [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)
    assert any(record.name == "fluxclaw.http" for record in caplog.records)
    for text in texts:
        assert KEY not in text

    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != source]
    assert len(written) >= 6  # images and their sidecars
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path

    log = sandbox.requests()
    images = [r for r in log if r["path"].startswith("/_images/")]
    uploads = [r for r in log if r["method"] == "PUT"]
    api = [r for r in log if r["path"].startswith("/api/")]
    assert images and uploads and api
    assert not any(r["authorization"] for r in images + uploads)
    assert all(r["authorization"] for r in api if r["path"] != "/api/v1/price_schedules")


def test_no_key_fails_before_any_request(
    make_client: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUNAPI_API_KEY", raising=False)
    monkeypatch.setenv("FLUXCLAW_CONFIG", str(tmp_path / "none.json"))
    client = make_client(api_key=None)
    with pytest.raises(AuthenticationError, match="RUNAPI_API_KEY") as caught:
        client.generate("a lighthouse")
    assert caught.value.exit_code == 2
    assert sandbox.requests() == []


def test_a_bad_base_url_is_refused(make_client: Any) -> None:
    from fluxclaw import ValidationError

    with pytest.raises(ValidationError, match="base_url=ftp://x"):
        make_client(base_url="ftp://x")
