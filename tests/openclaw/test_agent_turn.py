"""A whole agent turn in a real OpenClaw: the model runs the skill's command through `exec`, the
reply carries the `MEDIA:` line, and the image reaches a (fake) Telegram chat byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import OpenClaw
from .fakes import ScriptedModel, Telegram, scripted_provider, serve
from .test_skill_commands import skill_commands

KEY = "sk-agent-turn-SECRET-51c2"


def test_generated_image_is_delivered_to_the_chat(
    openclaw: OpenClaw, fluxclaw_sandbox_factory: Any
) -> None:
    sandbox = fluxclaw_sandbox_factory(api_key=KEY)
    words = skill_commands()["generate"]
    command = " ".join(f'"{w}"' if w == "PROMPT" else w for w in words).replace(
        "PROMPT", "a studio photo of a ceramic mug"
    )
    model, telegram = ScriptedModel(command), Telegram()
    with serve(model, telegram) as (model_port, telegram_port):
        openclaw.configure(
            {
                # The key reaches the command only through the skill's entry.
                "skills": {"entries": {"fluxclaw": {"apiKey": KEY}}},
                "models": {"providers": scripted_provider(model_port)},
                "agents": {
                    "defaults": {
                        "model": {"primary": "fake/scripted"},
                        "workspace": str(openclaw.workspace),
                    }
                },
                "channels": {
                    "telegram": {
                        "enabled": True,
                        "botToken": "123456:X",
                        "apiRoot": f"http://127.0.0.1:{telegram_port}",
                    }
                },
            }
        )
        done = openclaw.run(
            "agent",
            "--local",
            "--agent",
            "main",
            "--channel",
            "telegram",
            "--to",
            "12345",
            "--deliver",
            "--message",
            "make me a photo of a ceramic mug",
            "--json",
            env={"RUNAPI_BASE_URL": sandbox.base_url, "FLUXCLAW_TIME_SCALE": "0.01"},
            timeout=240,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result, _ = json.JSONDecoder().raw_decode(done.stdout)
    assert result["deliveryStatus"]["status"] == "sent", result["deliveryStatus"]

    saved = sorted((openclaw.workspace / "generated" / "fluxclaw").glob("*.png"))
    assert len(saved) == 1
    # The reply carries the MEDIA line on its own line; OpenClaw turned it into an attachment.
    assert f"MEDIA:{saved[0]}" in result["meta"]["finalAssistantVisibleText"].splitlines()
    assert result["payloads"][0]["mediaUrls"]
    photos = [data for method, data in telegram.uploads if method in ("sendPhoto", "sendDocument")]
    assert photos == [Path(saved[0]).read_bytes()]

    creates = [r for r in sandbox.requests() if r["method"] == "POST" and r["status"] == 200]
    assert len(creates) == 1 and len(sandbox.ledger()["charges"]) == 1
    assert len(model.requests) == 2
    assert all(KEY.encode() not in body for body in model.requests)
