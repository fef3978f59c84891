"""Round 2, found by reading the change: a batch file that moves or changes under a run, a
format asked after an image was saved, files a hostile server or a user's catalogue holds, a
signed save done twice, and a short key beside a long one."""

from __future__ import annotations

import asyncio
import io
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fluxclaw import AsyncClient, Client, PollPolicy, redaction, saving
from fluxclaw.batch import Row, RowFile, plan_batch, run_batch
from fluxclaw.history import History
from tests.reliability.round2 import KEY, cli, env_for

FAST = PollPolicy(time_scale=0.01)


def _charges(sandbox: Any) -> int:
    return len(sandbox.ledger()["charges"])


@pytest.mark.round2("batch files")
def test_a_batch_file_gone_before_the_run_still_gets_a_manifest(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A batch file moved away after the plan: no row starts, no internal error, and the
    manifest lists every planned row from the ledger"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a red lamp"}\n{"prompt": "a blue lamp"}\n')

    async def go() -> Any:
        async with AsyncClient(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client:
            history = History()
            plan = plan_batch(client, RowFile(rows), tmp_path / "out", history)
            rows.rename(tmp_path / "moved.jsonl")
            return await run_batch(client, [], tmp_path / "out", plan=plan, history=history)

    result = asyncio.run(go())
    lines = result.rows
    assert len(lines) == 2 and all("could not be read again" in line["error"] for line in lines)
    assert _charges(sandbox) == 0


@pytest.mark.round2("batch files")
def test_rows_that_change_during_a_run_are_counted_as_bad(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A row changed after the plan is an invalid row of the run (the CLI exits 1 for it)"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    rows: list[Row] = [Row(1, "a red lamp"), Row(2, "a blue lamp")]

    async def go() -> Any:
        async with AsyncClient(api_key=KEY, base_url=sandbox.base_url, poll=FAST) as client:
            history = History()
            plan = plan_batch(client, rows, tmp_path / "out", history)
            rows[1] = Row(2, "a green lamp")  # edited between the plan and the run
            return await run_batch(client, rows, tmp_path / "out", plan=plan, history=history)

    result = asyncio.run(go())
    assert result.counts == {"done": 1, "invalid": 1}
    assert _charges(sandbox) == 1


@pytest.mark.round2("batch files")
def test_a_format_asked_after_saving_is_a_resave_not_a_charge(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """A batch saved as served (JPEG) run again with --format png saves a PNG of the same task"""
    sandbox = fluxclaw_sandbox_factory(api_key=KEY, image_format="jpeg")
    env = env_for(tmp_path, sandbox.base_url)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "rows.jsonl").write_text('{"prompt": "a cow in a field"}\n')
    assert cli(tmp_path, env, "batch", "rows.jsonl", "-o", "out").returncode == 0
    again = cli(tmp_path, env, "batch", "rows.jsonl", "-o", "out", "--format", "png")
    assert again.returncode == 0, again.stderr
    assert "1 unfinished" in again.stderr
    saved = sorted(
        p.suffix for p in (tmp_path / "work" / "out").glob("a-cow*") if p.suffix != ".json"
    )
    assert saved == [".jpg", ".png"] and _charges(sandbox) == 1


def _jpeg_with_a_stray_byte() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(out, "JPEG")
    data = out.getvalue()
    at = 4 + int.from_bytes(data[4:6], "big")  # after APP0
    return data[:at] + b"\x00" + data[at:]


def _webp_of_many_chunks(count: int = 3_000_000) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "WEBP", lossless=True)
    body = out.getvalue()[12:] + b"ABCD\x00\x00\x00\x00" * count
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


@pytest.mark.round2("pages")
@pytest.mark.parametrize("make", [_jpeg_with_a_stray_byte, _webp_of_many_chunks])
def test_a_paid_image_with_an_odd_container_is_saved_unlabelled(make: Any, tmp_path: Path) -> None:
    """A decodable image whose container cannot be walked (a stray byte, millions of empty
    chunks) is saved with its pixels as paid for, unlabelled, said in a warning and the
    sidecar"""
    data = make()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        saved = saving.store(data, tmp_path / "x", metadata={"model": "m"})
    with Image.open(saved.path) as kept, Image.open(io.BytesIO(data)) as served:
        assert kept.tobytes() == served.tobytes()  # the pixels as paid for
    side = json.loads(saved.sidecar.read_text()) if saved.sidecar else {}
    assert side["provenance"]["c2pa"] == "unknown" and side["provenance"]["label"] is None
    assert any("without an AI label" in str(w.message) for w in seen)


@pytest.mark.round2("pages")
def test_provenance_says_and_skips_what_it_cannot_read(tmp_path: Path) -> None:
    """`fluxclaw provenance` on a truncated, a fake and an endless file: each said, none read
    whole, the good file still reported; a --trust that is not PEM is one error"""
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:40])
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 64)
    env = env_for(tmp_path, "http://127.0.0.1:9")
    names = [str(tmp_path / n) for n in ("cut.png", "fake.png", "good.png")] + ["/dev/zero"]
    done = cli(tmp_path, env, "provenance", "--json", *names)
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == [str(good)]
    assert done.stderr.count("error: ") == 3 and "larger than 32 MiB" in done.stderr
    (tmp_path / "ca.pem").write_bytes(b"\x00\x01 not pem")
    bad = cli(tmp_path, env, "provenance", str(good), "--trust", str(tmp_path / "ca.pem"))
    assert bad.returncode == 4 and "holds no PEM certificate" in bad.stderr


@pytest.mark.round2("pages")
def test_a_signed_save_done_twice_keeps_one_file(
    fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    """Saving the same task again with signing on (a signature differs each time) keeps the
    file it made the first time instead of adding `-2`"""
    from fluxclaw import credentials

    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    ca = credentials.make_test_ca(tmp_path / "ca")
    signing = {"c2pa_cert": ca.cert_chain, "c2pa_key": ca.key}
    with Client(api_key=KEY, base_url=sandbox.base_url, poll=FAST, **signing) as client:
        result = client.generate("a lamp on a desk")
        first = client.save(result, tmp_path / "out")[0].path
        second = client.save(result, tmp_path / "out")[0].path
    assert first == second
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        first.name,
        first.name + ".json",
    ]


@pytest.mark.round2("the scrubber")
def test_a_short_key_beside_a_long_one_is_masked_whole() -> None:
    """A short key with a `.` just before a long key: both go, no part of either is left"""
    redaction.remember("ab.cd", ".secret-token-1234")
    assert redaction.scrub("key=ab.cd.secret-token-1234 end") == "key=*** end"
