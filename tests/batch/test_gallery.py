"""The batch gallery in a real headless Chromium (Debian's, unpacked into .cache/chromium by
`make test` without root): it opens from disk, every thumbnail loads, and failures show as
failures. `FLUXCLAW_WRITE_DOCS=1` also writes the screenshot to docs/gallery.png."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

FLUXCLAW = str(Path(sys.executable).with_name("fluxclaw"))
KEY = "sk-gallery-SECRET-91f0"
DOCS = Path(__file__).parents[2] / "docs"
CHROMIUM = Path(__file__).parents[2] / ".cache" / "chromium" / "bin" / "chromium"


class Browser:
    """Chromium over the DevTools protocol: one page, evaluate, screenshot."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(reply["error"])
                return reply["result"]
        raise AssertionError(f"{method}: no answer")

    def page(self, method: str, **params: Any) -> Any:
        return self.call(method, self.session, **params)

    def evaluate(self, expression: str) -> Any:
        result = self.page(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: `make test` unpacks it (tests/setup/install-chromium.sh)")
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-port=0",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-gpu",
            "--window-size=1280,900",
            "about:blank",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ws_url = None
    deadline = time.monotonic() + 60
    while ws_url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        ws_url = found.group(1) if found else None
    assert ws_url, "chromium did not start its DevTools endpoint"
    try:
        with connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30) as ws:
            yield Browser(ws)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_gallery_shows_every_image_and_every_failure(
    browser: Browser, cli_env: dict[str, str], fluxclaw_sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    subjects = ["teapot", "bicycle", "lighthouse", "fox", "violin", "cactus", "sneaker", "lamp"]
    ratios = ["1:1", "3:4", "16:9", "4:3"]
    rows = [
        {"prompt": f"a studio photo of a {s}", "aspect_ratio": ratios[i % 4]}
        for i, s in enumerate(subjects)
    ]
    rows.append({"prompt": "a photo that fails [sandbox:fail]"})
    rows.append({"prompt": "no", "model": "pro"})  # a bad row: prompt too short
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**cli_env, "RUNAPI_API_KEY": KEY, "FLUXCLAW_TIME_SCALE": "0.01"}
    done = subprocess.run(
        [FLUXCLAW, "batch", "rows.jsonl", "-o", "out", "--base-url", sandbox.base_url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # one failure, one bad row
    index = tmp_path / "out" / "index.html"
    browser.page("Page.enable")
    browser.page("Page.navigate", url=index.as_uri())
    state = browser.evaluate(
        "new Promise(r => { const check = () => document.readyState === 'complete'"
        " ? r(true) : setTimeout(check, 50); check(); })"
    )
    assert state is True
    # Lazy images load as they scroll into view: ask for each, then wait for all.
    images = browser.evaluate(
        """(async () => {
          const imgs = Array.from(document.images);
          imgs.forEach(i => { i.loading = 'eager'; i.scrollIntoView(); });
          await Promise.all(imgs.map(i => i.complete ? 0 : new Promise(
            r => { i.onload = r; i.onerror = r; })));
          return imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);
        })()"""
    )
    assert len(images) == 8
    assert all(complete and width > 0 for _, complete, width in images), images
    failed = browser.evaluate("document.querySelectorAll('.card.failed').length")
    text = browser.evaluate("document.body.innerText")
    assert failed == 2 and "line 10" in text and "failed" in text
    assert "a studio photo of a teapot" in text and "$0.40 spent" in text
    browser.evaluate("window.scrollTo(0, 0)")
    shot = base64.b64decode(browser.page("Page.captureScreenshot", format="png")["data"])
    assert shot.startswith(b"\x89PNG")
    if os.environ.get("FLUXCLAW_WRITE_DOCS"):
        (DOCS / "gallery.png").write_bytes(shot)
