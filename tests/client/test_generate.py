"""Generate and remix with every model, ratio and resolution the contract allows; resume by id."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from fluxclaw import AsyncClient, PollPolicy, Result, TaskStatus, contract


def allowed(action: contract.Action, family: str) -> list[tuple[str, str]]:
    ratios = list(contract.ASPECT_RATIOS)
    if action == "remix_image" and family != "max":
        ratios.append(contract.AUTO_RATIO)
    resolutions = ["1k"] if family == "max" else list(contract.RESOLUTIONS)
    return [(ratio, res) for ratio in ratios for res in resolutions]


def source_png(tmp_path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    path = tmp_path / "source.png"
    PILImage.new("RGB", size, (10, 120, 200)).save(path)
    return path


def check(result: Result, action: str, family: str, ratio: str, res: str) -> None:
    model = contract.model_for(family, action)  # type: ignore[arg-type]
    assert result.status == "completed"
    assert result.model == model.id
    assert (result.aspect_ratio, result.resolution) == (ratio, res)
    assert result.images and result.url.startswith("http")
    price = contract.price_cents(model.family, res)
    if price is not None:
        assert result.cost_cents == price
    assert result.elapsed is not None and result.polls >= 1


@pytest.mark.parametrize("family", contract.FAMILIES)
def test_generate_every_ratio_and_resolution(client: Any, family: str) -> None:
    combos = allowed("text_to_image", family)
    tasks = [
        client.submit_generate(
            f"a lighthouse {ratio} {res}", model=family, aspect_ratio=ratio, resolution=res
        )
        for ratio, res in combos
    ]  # all submitted first, so they run side by side in the sandbox
    for task, (ratio, res) in zip(tasks, combos, strict=True):
        check(client.wait(task), "text_to_image", family, ratio, res)


@pytest.mark.parametrize("family", contract.FAMILIES)
def test_remix_every_ratio_and_resolution(client: Any, family: str, tmp_path: Path) -> None:
    url = client.upload(source_png(tmp_path))
    combos = allowed("remix_image", family)
    tasks = [
        client.submit_remix(
            f"the same scene at night {ratio}",
            [url],
            model=family,
            aspect_ratio=ratio,
            resolution=res,
        )
        for ratio, res in combos
    ]
    for task, (ratio, res) in zip(tasks, combos, strict=True):
        check(client.wait(task), "remix_image", family, ratio, res)


def test_image_sizes_follow_ratio_and_resolution(client: Any) -> None:
    for ratio, res in [("16:9", "1k"), ("2:3", "2k")]:
        result = client.generate("a wide valley", aspect_ratio=ratio, resolution=res)
        with PILImage.open(io.BytesIO(result.images[0].read())) as image:
            assert image.size == contract.image_size(ratio, res)


def test_full_model_ids_map_to_the_action(client: Any, tmp_path: Path) -> None:
    result = client.remix(
        "a fox in snow", [source_png(tmp_path)], model="flux-2-flex-text-to-image"
    )
    assert result.model == "flux-2-flex-remix-image"


def test_remix_from_local_path_and_bytes(client: Any, sandbox: Any, tmp_path: Path) -> None:
    path = source_png(tmp_path)
    result = client.remix("make it autumn", [path, path.read_bytes()], aspect_ratio="auto")
    assert result.status == "completed"
    log = sandbox.requests()
    puts = [r for r in log if r["method"] == "PUT"]
    assert len(puts) == 2 and not any(r["authorization"] for r in puts)
    paths = [r["path"] for r in log]
    assert paths.count("/api/v1/files/prepare") == 2
    assert paths.count("/api/v1/files/confirm") == 2


def test_on_update_reports_the_id_first_then_each_status(client: Any) -> None:
    seen: list[TaskStatus] = []
    result = client.generate("a quiet harbour", on_update=seen.append)
    assert seen[0].task_id == result.task_id and seen[0].polls == 0
    assert seen[-1].status == "completed"
    assert {s.status for s in seen} <= {"pending", "processing", "completed"}


def test_submit_returns_at_once_and_get_reads_status(client: Any) -> None:
    task = client.submit_generate("a paper boat [sandbox:seconds=3]")
    assert task.status in ("pending", "processing") and task.idempotency_key
    assert task.to_dict()["task_id"] == task.id
    status = client.status(task.id)
    assert status.task_id == task.id and not status.done
    assert status.to_dict()["status"] in ("pending", "processing")
    result = client.wait(task)
    assert result.task_id == task.id


def test_resume_by_task_id_alone_in_a_new_client(make_client: Any, tmp_path: Path) -> None:
    first = make_client()
    generated = first.submit_generate("a tram in the rain", model="flex")
    remixed = first.submit_remix("a tram at noon", [source_png(tmp_path)], model="pro")
    fresh = make_client()  # knows nothing but the ids
    result = fresh.wait(generated.id)
    assert result.task_id == generated.id and result.action == "text_to_image"
    result = fresh.wait(remixed.id)
    assert result.task_id == remixed.id and result.action == "remix_image"
    assert fresh.status(remixed.id).status == "completed"


def test_save_writes_images_and_sidecars(client: Any, tmp_path: Path) -> None:
    result = client.generate("a cabin, woodcut style", resolution="1k")
    saved = client.save(result, tmp_path / "out")
    assert saved[0].path == tmp_path / "out" / f"{result.task_id}.png"
    assert saved[0].sidecar is not None and saved[0].sidecar.exists()
    webp = client.save(result, tmp_path / "cabin.webp", quality=70)[0]
    assert webp.format == "webp" and webp.path.name == "cabin.webp"
    jpeg = result.save(tmp_path, format="jpeg")[0]
    assert jpeg.path.suffix == ".jpg"


def test_replayed_create_returns_the_same_task(client: Any, sandbox: Any) -> None:
    first = client.submit_generate("a kite", idempotency_key="same-key-1")
    again = client.submit_generate("a kite", idempotency_key="same-key-1")
    assert again.id == first.id and again.replayed
    client.wait(first)
    assert len(sandbox.ledger()["charges"]) == 1


def test_money_and_account(client: Any) -> None:
    estimate = client.estimate_cost("flex", "2k", 3)
    assert (estimate.unit_cents, estimate.total_cents, estimate.basis) == (24, 72, "contract")
    assert client.estimate_cost("max").basis == "unknown"
    assert isinstance(client.balance()["balance_cents"], int)
    assert "id" in client.me()
    assert client.price_schedules(action="text_to_image")


def test_download_size_cap(make_client: Any, tmp_path: Path) -> None:
    from fluxclaw import DownloadError

    client = make_client(max_image_bytes=1000)
    result = client.generate("a detailed map")
    with pytest.raises(DownloadError, match="cap") as caught:
        client.save(result, tmp_path)
    assert caught.value.task_id == result.task_id
    assert list(tmp_path.iterdir()) == []


def test_server_retry_after_on_status_is_honoured(make_client: Any, sandbox: Any) -> None:
    # A schedule that would poll every 10 ms; the server's Retry-After says when to come back.
    client = make_client(poll=PollPolicy(time_scale=0.0001, max_interval=0.01))
    eager = client.generate("a heron, no hints [sandbox:seconds=0.3]")
    sandbox.configure(retry_after=True)
    hinted = client.generate("a patient heron [sandbox:seconds=0.3]")
    assert hinted.status == "completed"
    assert hinted.polls <= 3 < eager.polls


def test_quote_from_the_server(client: Any) -> None:
    quote = client.quote("a lighthouse", model="flex", resolution="2k")["price_quote"]
    assert quote["reservation_amount_cents"] == client.estimate_cost("flex", "2k").unit_cents


def test_async_result_helpers(sandbox: Any, tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncClient(
            sandbox.api_key, sandbox.base_url, poll=PollPolicy.preset("eager", time_scale=0.01)
        ) as client:
            client_result = await client.generate("a tiny boat", timeout=30)
            data = await client_result.images[0].aread()
            assert data.startswith(b"\x89PNG")
            saved = await client_result.asave(tmp_path, format="jpeg")
            assert saved[0].path.suffix == ".jpg"
            one = await client_result.images[0].asave(tmp_path / "one.webp")
            assert one.format == "webp"

    asyncio.run(run())


def test_async_client_reused_in_a_second_event_loop_says_what_to_do(sandbox: Any) -> None:
    client = AsyncClient(sandbox.api_key, sandbox.base_url, poll=PollPolicy(time_scale=0.01))
    with asyncio.Runner() as first:
        assert first.run(client.balance())
        before = len(sandbox.requests())
        with pytest.raises(RuntimeError, match="one AsyncClient per asyncio"):
            asyncio.run(client.balance())
        assert len(sandbox.requests()) == before  # refused before anything was sent
        first.run(client.aclose())
