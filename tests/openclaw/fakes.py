"""Loopback stand-ins for the two outside services of an OpenClaw turn: the model and Telegram.

The model server speaks OpenAI's streaming chat API and follows a script: first a tool call to
`exec` with the skill's command, then (after the tool result) a reply that copies its `MEDIA:`
lines. The Telegram server answers the Bot API and keeps every upload.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        out = b""
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                return out
            out += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def send_json(handler: BaseHTTPRequestHandler, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def scripted_provider(port: int) -> dict[str, Any]:
    """`models.providers` entry for the scripted model on `port` (select it as fake/scripted)."""
    model = {"id": "scripted", "name": "scripted", "contextWindow": 128000, "maxTokens": 4096}
    return {
        "fake": {
            "baseUrl": f"http://127.0.0.1:{port}/v1",
            "apiKey": "dummy",
            "api": "openai-completions",
            "models": [model],
        }
    }


class ScriptedModel:
    """Calls one tool (by default `exec` with `command`), then answers with the result's
    `MEDIA:` lines."""

    def __init__(
        self, command: str = "", *, tool: str = "exec", args: dict[str, Any] | None = None
    ) -> None:
        self.command = command
        self.tool = tool
        self.args = args
        self.requests: list[bytes] = []

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "scripted"}
        tool_results = [m for m in body.get("messages", []) if m.get("role") == "tool"]
        if not tool_results:
            args = self.args or {"command": self.command, "yieldMs": 120000, "timeoutSeconds": 300}
            call = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": self.tool, "arguments": json.dumps(args)},
            }
            delta: dict[str, Any] = {"role": "assistant", "tool_calls": [call]}
            finish = "tool_calls"
        else:
            content = tool_results[-1].get("content")
            if isinstance(content, list):
                content = "\n".join(str(part.get("text", "")) for part in content)
            media = [line for line in str(content).splitlines() if line.startswith("MEDIA:")]
            delta = {"role": "assistant", "content": "Here is your image.\n" + "\n".join(media)}
            finish = "stop"
        return [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]


class Telegram:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.uploads: list[tuple[str, bytes]] = []  # (method, file bytes)

    def record(self, path: str, content_type: str, body: bytes) -> None:
        method = path.rsplit("/", 1)[-1]
        self.calls.append(method)
        if content_type.startswith("multipart/"):
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            message = BytesParser(policy=HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                if part.get_filename():
                    payload = part.get_payload(decode=True)
                    assert isinstance(payload, bytes)
                    self.uploads.append((method, payload))

    @staticmethod
    def result(method: str) -> Any:
        if method == "getMe":
            return {"id": 123456, "is_bot": True, "first_name": "bot", "username": "fakebot"}
        if method.startswith("send"):
            return {"message_id": 1, "date": 0, "chat": {"id": 12345, "type": "private"}}
        if method == "getUpdates":
            return []
        return True


@contextmanager
def serve(model: ScriptedModel, telegram: Telegram) -> Iterator[tuple[int, int]]:
    class ModelHandler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            send_json(self, {"data": [{"id": "scripted", "object": "model"}]})

        def do_POST(self) -> None:
            raw = read_body(self)
            model.requests.append(raw)
            chunks = model.answer(json.loads(raw))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    class TelegramHandler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = read_body(self)
            telegram.record(self.path, self.headers.get("Content-Type") or "", body)
            send_json(self, {"ok": True, "result": telegram.result(self.path.rsplit("/", 1)[-1])})

        do_GET = do_POST

    servers = [
        ThreadingHTTPServer(("127.0.0.1", 0), ModelHandler),
        ThreadingHTTPServer(("127.0.0.1", 0), TelegramHandler),
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
