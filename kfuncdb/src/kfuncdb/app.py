"""Configuration from the environment, plugin loading and the HTTP API."""
from __future__ import annotations

import dataclasses
import hmac
import importlib.util
import json
import logging
import os
import pathlib
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import chat, page
from .errors import ApiError, from_exception
from .plugins import builtin_plugins
from .plugins.llm import LiteLLMClient
from .policy import Policy
from .registry import ConfigError, Plugin, Registry

log = logging.getLogger("kfuncdb")
# One line per tool call with the user who made it (direct calls and the model's calls in a chat alike).
audit = logging.getLogger("kfuncdb.audit")


@dataclasses.dataclass
class Settings:
    policy: Policy
    port: int = 8081
    bind: str = "0.0.0.0"
    max_body_bytes: int = 1024 * 1024
    tool_timeout_s: float = 30.0
    llm_timeout_s: float = 120.0
    max_tool_rounds: int = 4
    plugins_dir: str = ""
    api_key: str = ""

    @classmethod
    def from_env(cls, env: dict) -> "Settings":
        """Raises PolicyError (unknown capability) or ConfigError (malformed number, unreadable file)."""
        policy = Policy.parse(env.get("KFUNCDB_ALLOW_CAPS"))

        def number(name, default, kind=int, minimum=1, maximum=None):
            raw = env.get(name, "")
            try:
                value = kind(raw) if raw != "" else default
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {value}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{name} must be at most {maximum}, got {value}")
            return value

        api_key = ""
        if env.get("KFUNCDB_API_KEY_FILE"):
            try:
                api_key = pathlib.Path(env["KFUNCDB_API_KEY_FILE"]).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(f"cannot read KFUNCDB_API_KEY_FILE: {error.strerror}") from None
            if len(api_key) < 16:
                raise ConfigError("the key in KFUNCDB_API_KEY_FILE is shorter than 16 characters")
        return cls(
            policy=policy,
            port=number("KFUNCDB_PORT", 8081, maximum=65535),
            bind=env.get("KFUNCDB_BIND", "0.0.0.0"),
            max_body_bytes=number("KFUNCDB_MAX_BODY_BYTES", 1024 * 1024, minimum=64),
            tool_timeout_s=number("KFUNCDB_TOOL_TIMEOUT_S", 30.0, float, minimum=0.01),
            llm_timeout_s=number("KFUNCDB_LLM_TIMEOUT_S", 120.0, float, minimum=1),
            max_tool_rounds=number("KFUNCDB_MAX_TOOL_ROUNDS", 4),
            plugins_dir=env.get("KFUNCDB_PLUGINS_DIR", ""),
            api_key=api_key,
        )


def load_plugin_dir(path: str) -> list[Plugin]:
    """Extra plugins: each *.py in the directory defines PLUGINS, a list of Plugin instances. They declare their
    capabilities like the built-ins and get exactly the same load- and call-time checks."""
    plugins = []
    for file in sorted(pathlib.Path(path).glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"kfuncdb_plugin_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = getattr(module, "PLUGINS", None)
        if not isinstance(found, list) or not all(isinstance(p, Plugin) for p in found):
            raise ConfigError(f"{file}: must define PLUGINS, a list of kfuncdb.registry.Plugin instances")
        plugins.extend(found)
    return plugins


class App:
    def __init__(self, env: dict, plugins: list[Plugin] | None = None):
        self.settings = Settings.from_env(env)
        self.registry = Registry(self.settings.policy, self.settings.tool_timeout_s)
        self.llm = LiteLLMClient(env)
        if plugins is None:
            plugins = [p for p in builtin_plugins() if p.id != "llm" or self.llm.configured]
            if self.settings.plugins_dir:
                plugins += load_plugin_dir(self.settings.plugins_dir)
        for plugin in plugins:
            self.registry.load(plugin, env)
        provided = {cap for p in plugins for cap in p.capabilities}
        for cap in sorted(self.settings.policy.allowed - provided):
            log.warning("capability %s is allowed but no plugin provides it", cap)

    def make_server(self, host: str | None = None, port: int | None = None) -> ThreadingHTTPServer:
        app = self

        class Handler(ApiHandler):
            pass
        Handler.app = app
        server = ThreadingHTTPServer((host or self.settings.bind, self.settings.port if port is None else port),
                                     Handler)
        server.daemon_threads = True
        return server


class ApiHandler(BaseHTTPRequestHandler):
    app: App
    server_version = "kfuncdb"
    sys_version = ""

    # --- plumbing ---------------------------------------------------------------------------------------------
    def log_message(self, fmt, *args):  # access log without bodies (they may carry prompts or secrets)
        log.info("%s %s", self.address_string(), fmt % args)

    def send_json(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_page(self) -> None:
        data = page.render(self.app.registry.describe(), self.app.settings.policy,
                           self.headers.get("Remote-User")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", page.CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def fail(self, error: Exception) -> None:
        api_error = from_exception(error)
        if api_error.status == 500:
            log.exception("request failed")
        self.send_json(api_error.status, api_error.body())

    def actor(self) -> str:
        """Who asks: the Authelia user Caddy forwarded (forged ones are stripped at Caddy), for the audit log."""
        return self.headers.get("Remote-User") or "(no Remote-User)"

    def refuse_foreign_post(self) -> None:
        """POSTs are JSON from this origin only. A form or text/plain body needs no CORS preflight, so a page on
        any sibling vhost could otherwise make the signed-in administrator's browser call tools."""
        media_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        fetch_site = self.headers.get("Sec-Fetch-Site", "").lower()
        if fetch_site not in ("", "same-origin", "none"):
            raise ApiError(403, "cross_site_refused", f"cross-site request refused (Sec-Fetch-Site: {fetch_site})")
        origin = self.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc.lower() != self.headers.get("Host", "").lower():
            raise ApiError(403, "cross_site_refused", "cross-origin request refused (Origin is not this host)")

    def authorised(self) -> bool:
        key = self.app.settings.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key.encode())

    def read_json(self):
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise ApiError(411, "length_required", "send the body with a Content-Length")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None or not raw_length.isdigit():
            raise ApiError(411, "length_required", "send the body with a Content-Length")
        length = int(raw_length)
        if length > self.app.settings.max_body_bytes:
            # Refused before reading it; the connection is closed so the unread body does not matter.
            self.close_connection = True
            raise ApiError(413, "body_too_large",
                           f"body of {length} bytes exceeds the limit of {self.app.settings.max_body_bytes}")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            raise ApiError(400, "bad_request", "body is not valid JSON") from None

    def route(self, method: str):
        path = self.path.split("?", 1)[0]
        try:
            if method in ("GET", "HEAD") and path == "/healthz":
                return self.send_json(200, {"status": "ok"})
            if not self.authorised():
                raise ApiError(401, "unauthorized", "missing or wrong API key")
            if method in ("GET", "HEAD") and path == "/":
                return self.send_page()
            if method == "GET" and path == "/tools":
                return self.send_json(200, self.app.registry.describe())
            if method == "POST" and path in ("/call-tool", "/v1/chat/completions"):
                self.refuse_foreign_post()
            if method == "POST" and path == "/call-tool":
                return self.call_tool()
            if method == "POST" and path == "/v1/chat/completions":
                body = self.read_json()
                return self.send_json(200, chat.complete(body, self.app.registry, self.app.llm,
                                                         self.app.settings.max_tool_rounds,
                                                         self.app.settings.llm_timeout_s, actor=self.actor()))
            if path in ("/", "/healthz", "/tools", "/call-tool", "/v1/chat/completions"):
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}")
            raise ApiError(404, "not_found", f"no endpoint {path}")
        except Exception as error:  # noqa: BLE001 - every failure gets a structured answer
            self.fail(error)

    def call_tool(self):
        body = self.read_json()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ApiError(400, "bad_request", "body must be {\"name\": <tool>, \"args\": {...}}")
        try:
            result, elapsed = self.app.registry.call(body["name"], body.get("args", {}))
        except Exception as error:
            audit.info("tool %s called by %s: refused or failed (%s)", body["name"], self.actor(),
                       from_exception(error).code)
            raise
        audit.info("tool %s called by %s: ok in %d ms", body["name"], self.actor(), elapsed)
        self.send_json(200, {"result": result, "elapsedMs": elapsed})

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.route("GET")

    def do_HEAD(self):  # noqa: N802
        self.route("HEAD")

    def do_POST(self):  # noqa: N802
        self.route("POST")

    def do_PUT(self):  # noqa: N802
        self.route("PUT")

    def do_DELETE(self):  # noqa: N802
        self.route("DELETE")


def main(env=None) -> int:
    env = dict(os.environ if env is None else env)
    logging.basicConfig(level=env.get("KFUNCDB_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = App(env)
    except (ValueError, ConfigError) as error:  # PolicyError and SchemaError are ValueErrors
        log.error("refusing to start: %s", error)
        return 2
    log.info("policy allows: %s", ", ".join(sorted(app.settings.policy.allowed)) or "nothing privileged")
    server = app.make_server()
    log.info("listening on %s:%d", app.settings.bind, app.settings.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.registry.shutdown()
    return 0
