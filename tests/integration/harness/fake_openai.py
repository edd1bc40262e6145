"""A tiny OpenAI-compatible chat endpoint for the harness's image self-tests (stdlib only).

It runs inside a container made from the base image (``python3 -c <this source>``), so LiteLLM and Open WebUI
talk to it over a real Docker network. Its answers are deterministic, which lets a test assert that a reply really
travelled through the service under test:

* ``GET /health`` -> 200
* ``GET /v1/models`` -> one model, ``FAKE_MODEL``
* ``POST /v1/chat/completions`` -> ``reply_for(<last user message>)``, as JSON or, with ``"stream": true``, as
  server-sent events

Every ``/v1`` request must carry ``Authorization: Bearer $FAKE_OPENAI_API_KEY`` (401 otherwise), so a test also
proves the service forwards the upstream key it was configured with.
"""
from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAKE_MODEL = "fake-model"
PORT = 8000
REPLY_PREFIX = "fake-openai reply to: "


def reply_for(prompt: str) -> str:
    """The answer the fake gives to a chat whose last user message is ``prompt``."""
    return REPLY_PREFIX + prompt


def container_command() -> list[str]:
    """The command that runs this server in a container whose image has python3 (the harness base image)."""
    return ["python3", "-c", Path(__file__).read_text()]


def _last_user_text(messages) -> str:
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # the multi-part form: keep the text parts
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content)
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"

    def log_message(self, fmt, *args):  # to stderr, visible in `docker logs`
        sys.stderr.write("fake-openai: " + (fmt % args) + "\n")

    def _send_json(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        expected = os.environ.get("FAKE_OPENAI_API_KEY", "")
        if expected and self.headers.get("Authorization", "") == f"Bearer {expected}":
            return True
        self._send_json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
        return False

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            if self._authorised():
                self._send_json(200, {"object": "list", "data": [
                    {"id": FAKE_MODEL, "object": "model", "created": 0, "owned_by": "datamancy-test"},
                ]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        if not self._authorised():
            return
        try:
            request = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "body is not JSON"}})
            return
        text = reply_for(_last_user_text(request.get("messages")))
        model = request.get("model") or FAKE_MODEL
        created = int(time.time())
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if request.get("stream"):
            self._stream(model, created, text, usage)
            return
        self._send_json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })

    def _stream(self, model: str, created: int, text: str, usage: dict) -> None:
        # No Content-Length: the stream ends when the connection closes.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
        ]
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("FAKE_OPENAI_PORT", PORT))), _Handler)
    server.daemon_threads = True
    sys.stderr.write(f"fake-openai: listening on {server.server_address}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
