"""Small JSON-over-HTTP client on urllib (stdlib only) with a deadline and a response size cap."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from ..registry import ConfigError, ToolError, remaining

MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def read_key(env: dict, variable: str) -> str:
    """The key in the file the environment variable names ("" when unset); unreadable stops the start."""
    path = env.get(variable, "")
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise ConfigError(f"cannot read {variable} {path}: {error.strerror}") from None


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


def request(method: str, url: str, deadline: float, body=None, headers: dict | None = None, raw: bool = False):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    # No proxies from the environment: tool traffic goes only where the configuration says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=remaining(deadline)) as response:
            payload = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = error.read(2048).decode(errors="replace").strip()
        raise ToolError(f"{method} {_redact(url)} answered {error.code}: {detail[:500]}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ToolError(f"{method} {_redact(url)} failed: {getattr(error, 'reason', error)}") from None
    if len(payload) > MAX_RESPONSE_BYTES:
        raise ToolError(f"{method} {_redact(url)}: response larger than {MAX_RESPONSE_BYTES} bytes")
    if raw:
        return payload
    try:
        return json.loads(payload)
    except ValueError:
        raise ToolError(f"{method} {_redact(url)}: response is not JSON") from None


def _redact(url: str) -> str:
    return url.split("?", 1)[0]
