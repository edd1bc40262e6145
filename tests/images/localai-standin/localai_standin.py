"""localai-standin: a small STAND-IN for LocalAI's OpenAI-compatible API. It is NOT LocalAI.

The test machines cannot pull LocalAI (nor download model weights), so this Python standard-library
server answers the OpenAI-shaped endpoints the datamancy.stack collection wires up, deterministically:

  GET  /readyz, /healthz                  (open, like LocalAI's)
  GET  /v1/models (/models)               models from LOCALAI_MODELS or the models directory
  POST /v1/chat/completions (/chat/...)   "stand-in answer: <sha256 of the last user message, 12 hex>"
                                          tool calls: if `tools` are offered and the last user message names one,
                                          answer with an OpenAI `tool_calls` message for it; if the last message
                                          is a `tool` result, answer with text that contains that result.
                                          `stream: true` is answered as server-sent events.
  POST /v1/embeddings (/embeddings)       normalised vectors derived from SHAKE-256 of the input

Configuration (environment):
  LOCALAI_API_KEY      optional; comma-separated keys accepted as `Authorization: Bearer <key>` (401 otherwise)
  LOCALAI_MODELS       optional comma-separated model names; else names from MODELS_PATH (*.yaml `name:`
                       or file stem); else "standin-chat,standin-embed"
  MODELS_PATH          default /models
  LOCALAI_EMBEDDING_DIM default 384
  LOCALAI_PORT         default 8080;  LOCALAI_HOST default 0.0.0.0
"""

import hashlib
import hmac
import json
import math
import os
import re
import signal
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.1.0-standin"
TITLE = "localai-standin (NOT LocalAI)"
MAX_BODY = 16 * 1024 * 1024
DEFAULT_MODELS = ["standin-chat", "standin-embed"]


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def discover_models(env_value, models_path):
    """Model names: explicit env list first, then the models directory, then the defaults."""
    if env_value and env_value.strip():
        return [m.strip() for m in env_value.split(",") if m.strip()]
    names = []
    if os.path.isdir(models_path):
        for entry in sorted(os.listdir(models_path)):
            full = os.path.join(models_path, entry)
            if entry.startswith(".") or not os.path.isfile(full):
                continue
            stem, ext = os.path.splitext(entry)
            name = stem
            if ext in (".yaml", ".yml"):
                # LocalAI model definitions carry `name:`; read just that key (no YAML parser in stdlib).
                with open(full, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        found = re.match(r"^name:\s*['\"]?([^'\"#\n]+?)['\"]?\s*(#.*)?$", line)
                        if found:
                            name = found.group(1).strip()
                            break
            if name not in names:
                names.append(name)
    return names or list(DEFAULT_MODELS)


def text_of(content):
    """OpenAI message content is a string or a list of parts; only text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text"))
    raise ApiError(400, "message content must be a string or a list of content parts")


def short_sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def count_tokens(text):
    # A rough, deterministic count (whitespace-separated words); real tokenisers are out of scope.
    return len(text.split())


def embedding(text, dim):
    """Deterministic unit vector: SHAKE-256(text) read as dim signed 32-bit integers, then normalised."""
    raw = hashlib.shake_256(text.encode("utf-8")).digest(4 * dim)
    values = [v / 2147483648.0 for v in struct.unpack(f">{dim}i", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def tool_arguments(tool, user_text):
    """Arguments derived deterministically from the user's text: for each required parameter,
    `name=value` or `name: value` in the message gives its value, otherwise a typed empty value."""
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    args = {}
    for name in params.get("required") or []:
        schema = props.get(name) or {}
        kind = schema.get("type", "string")
        found = re.search(rf"\b{re.escape(name)}\s*[=:]\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)", user_text)
        raw = found.group(1).strip("\"'") if found else None
        if kind == "integer":
            args[name] = int(raw) if raw and re.fullmatch(r"-?\d+", raw) else 0
        elif kind == "number":
            try:
                args[name] = float(raw) if raw is not None else 0.0
            except ValueError:
                args[name] = 0.0
        elif kind == "boolean":
            args[name] = (raw or "").lower() in ("true", "yes", "1")
        elif kind == "array":
            args[name] = [raw] if raw else []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = raw or ""
    return args


def choose_tool(tools, tool_choice, user_text):
    """The tool to call, or None for a text answer."""
    if not tools or tool_choice == "none":
        return None
    by_name = {}
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or "name" not in (tool.get("function") or {}):
            raise ApiError(400, "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}")
        by_name[tool["function"]["name"]] = tool
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name not in by_name:
            raise ApiError(400, f"tool_choice names unknown tool {name!r}")
        return by_name[name]
    lowered = user_text.lower()
    # Earliest mention wins; ties (one name inside another) go to the longer name. Deterministic.
    mentioned = sorted(
        ((lowered.find(n.lower()), -len(n), n) for n in by_name if n.lower() in lowered),
    )
    if mentioned:
        return by_name[mentioned[0][2]]
    if tool_choice == "required":
        return by_name[sorted(by_name)[0]]
    return None


class Handler(BaseHTTPRequestHandler):
    server_version = "localai-standin/" + VERSION
    sys_version = ""
    protocol_version = "HTTP/1.1"

    api_keys: list = []
    models: list = []
    dim: int = 384

    def log_message(self, fmt, *args):  # one line per request, never headers (they carry the key)
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status, payload):
        self._send(status, json.dumps(payload, separators=(",", ":")))

    def _error(self, status, message, kind):
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _consume_body(self):
        """Read the body up front so every reply leaves the keep-alive connection at a request boundary."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413 if length > 0 else 400, "request body too large" if length > 0 else "bad Content-Length")
        self._raw_body = self.rfile.read(length) if length else b""

    def _body(self):
        try:
            body = json.loads(self._raw_body or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the JSON body must be an object")
        return body

    def _authorised(self):
        if not self.api_keys:
            return True
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return False
        offered = auth[7:].strip().encode()
        # Compare against every key without stopping early, so timing does not reveal which matched.
        matches = [hmac.compare_digest(offered, key.encode()) for key in self.api_keys]
        return any(matches)

    def _dispatch(self):
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._consume_body()
            if path in ("/readyz", "/healthz") and self.command in ("GET", "HEAD"):
                self._send(200, "OK", "text/plain; charset=utf-8")
                return
            if not self._authorised():
                self._error(401, "An authentication key is required", "invalid_request_error")
                return
            route = {
                ("GET", "/v1/models"): self._models,
                ("GET", "/models"): self._models,
                ("POST", "/v1/chat/completions"): self._chat,
                ("POST", "/chat/completions"): self._chat,
                ("POST", "/v1/embeddings"): self._embeddings,
                ("POST", "/embeddings"): self._embeddings,
            }.get((self.command, path))
            if route is None:
                raise ApiError(404, f"{self.command} {path} is not implemented by {TITLE}")
            route()
        except ApiError as exc:
            self._error(exc.status, exc.message, exc.kind)
        except Exception as exc:  # report, do not kill the server thread silently
            self.log_message("internal error: %r", exc)
            self._error(500, f"internal error: {exc}", "server_error")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    # -- endpoints --------------------------------------------------------------------------------------
    def _model(self, body):
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "`model` is required")
        if model not in self.models:
            raise ApiError(404, f"model {model!r} not found (known: {', '.join(self.models)})")
        return model

    def _models(self):
        self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "localai-standin"} for m in self.models]})

    def _chat(self):
        body = self._body()
        model = self._model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ApiError(400, "`messages` must be a non-empty list of {role, content} objects")
        last = messages[-1]
        prompt_tokens = sum(count_tokens(text_of(m.get("content"))) for m in messages)

        message = {"role": "assistant", "content": None}
        finish = "stop"
        if last["role"] == "tool":
            # The model "reads" the tool output and reports it: lets tests follow a full tool round trip.
            message["content"] = f"stand-in final answer based on the tool result: {text_of(last.get('content'))}"
        else:
            user_text = ""
            for m in reversed(messages):
                if m["role"] == "user":
                    user_text = text_of(m.get("content"))
                    break
            tool = choose_tool(body.get("tools"), body.get("tool_choice", "auto"), user_text) if last["role"] == "user" else None
            if tool is not None:
                name = tool["function"]["name"]
                call_id = "call_" + hashlib.sha256(f"{name}\0{user_text}".encode()).hexdigest()[:24]
                message["tool_calls"] = [{
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(tool_arguments(tool, user_text), sort_keys=True)},
                }]
                finish = "tool_calls"
            else:
                message["content"] = f"stand-in answer: {short_sha(user_text)}"

        completion_tokens = count_tokens(message["content"] or "") + (len(message.get("tool_calls", [])) * 8)
        completion_id = "chatcmpl-" + hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
        created = int(time.time())
        if body.get("stream"):
            self._stream_chat(completion_id, created, model, message, finish)
            return
        self._json(200, {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        })

    def _stream_chat(self, completion_id, created, model, message, finish):
        """Server-sent events in OpenAI's chunk format: role+content (or tool calls), then the finish."""
        def chunk(delta, finish_reason=None):
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        delta = {"role": "assistant"}
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
        else:
            delta["content"] = message["content"]
        events = [chunk(delta), chunk({}, finish)]
        payload = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, payload, "text/event-stream")

    def _embeddings(self):
        body = self._body()
        model = self._model(body)
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(i, int) for i in raw):
            inputs = [" ".join(map(str, raw))]  # one pre-tokenised input
        elif isinstance(raw, list) and raw and all(isinstance(i, (str, list)) for i in raw):
            inputs = [i if isinstance(i, str) else " ".join(map(str, i)) for i in raw]
        else:
            raise ApiError(400, "`input` must be a string, a list of strings or a list of token lists")
        dim = body.get("dimensions", self.dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 8192:
            raise ApiError(400, "`dimensions` must be an integer between 1 and 8192")
        tokens = sum(count_tokens(i) for i in inputs)
        self._json(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": n, "embedding": embedding(text, dim)} for n, text in enumerate(inputs)],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


def main():
    host = os.environ.get("LOCALAI_HOST", "0.0.0.0")
    port = int(os.environ.get("LOCALAI_PORT", "8080"))
    models_path = os.environ.get("MODELS_PATH", "/models")
    Handler.api_keys = [k.strip() for k in os.environ.get("LOCALAI_API_KEY", "").split(",") if k.strip()]
    Handler.models = discover_models(os.environ.get("LOCALAI_MODELS", ""), models_path)
    Handler.dim = int(os.environ.get("LOCALAI_EMBEDDING_DIM", "384"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def stop(signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(
        f"{TITLE} {VERSION} listening on {host}:{port}; models: {', '.join(Handler.models)}; "
        f"embedding dim {Handler.dim}; api key {'required' if Handler.api_keys else 'NOT set'}\n"
    )
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
