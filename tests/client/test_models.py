"""Models are plain data: a result and its images keep the client that made them, and reading
or saving goes through it; an image built by hand is given one (the old call still works, for
one release, with a DeprecationWarning)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from fluxclaw import Client, Image, PollPolicy

FAST = PollPolicy(time_scale=0.01)  # the sandbox runs at 100x: polls at its pace


def test_results_and_their_images_read_and_save_through_their_own_client(
    fluxclaw_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNAPI_API_KEY", raising=False)  # no client could be built from it
    with Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=FAST
    ) as client:
        result = client.generate("a plain data teapot")
        assert result.client is client and result.images[0].client is client
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback, so no warning
            [saved] = result.save(tmp_path)
            data = result.images[0].read()
            one = result.images[0].save(tmp_path / "one.png")
    assert saved.path.is_file() and one.path.is_file() and data[:4] == b"\x89PNG"
    downloads = [r for r in fluxclaw_sandbox.requests() if r["path"].startswith("/_images/")]
    assert len(downloads) == 3


def test_an_image_built_by_hand_takes_a_client_and_the_old_call_warns(
    fluxclaw_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=FAST
    ) as client:
        url = client.generate("a hand-made teapot").url
        by_hand = Image(url)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert by_hand.read(client=client)[:4] == b"\x89PNG"
    monkeypatch.setenv("RUNAPI_API_KEY", fluxclaw_sandbox.api_key)
    monkeypatch.setenv("RUNAPI_BASE_URL", fluxclaw_sandbox.base_url)
    with pytest.warns(DeprecationWarning, match="pass client="):
        assert by_hand.read()[:4] == b"\x89PNG"


def test_statuses_and_job_results_keep_their_client_too(
    fluxclaw_sandbox: Any, tmp_path: Path
) -> None:
    from fluxclaw import jobs

    with Client(
        api_key=fluxclaw_sandbox.api_key, base_url=fluxclaw_sandbox.base_url, poll=FAST
    ) as client:
        result = client.generate("a bound teapot")
        assert client.status(result.task_id).images[0].client is client
        done = jobs.run(client, jobs.Job.generate("a job's teapot", output=str(tmp_path)))
        assert done.result is not None and done.result.client is client
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            done.result.save(tmp_path / "again")


def test_a_sync_save_of_an_async_result_keeps_the_clients_limits(
    fluxclaw_sandbox: Any, tmp_path: Path
) -> None:
    """The sync twin made for `Result.save` has the async client's options (here its image size
    cap), not the defaults."""
    import asyncio

    from fluxclaw import AsyncClient, FluxclawError

    async def made() -> Any:
        async with AsyncClient(
            api_key=fluxclaw_sandbox.api_key,
            base_url=fluxclaw_sandbox.base_url,
            max_image_bytes=100,
            poll=FAST,
        ) as client:
            return await client.generate("a lamp on a desk")

    result = asyncio.run(made())
    with pytest.raises(FluxclawError, match="100"):
        result.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
