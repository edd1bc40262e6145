#!/usr/bin/python3
"""A read-only front for the Docker API: the raw socket is mounted (read-only) into this container only, and
only the GET calls KFuncDB's host.docker.inspect tools need pass. Everything else is answered 403 here and never
reaches the engine. A read-only socket MOUNT does not make the API read-only; this allowlist does.

With DOCKER_PROXY_KEY_FILE every request needs "Authorization: Bearer <key>" (401 otherwise): the network it
listens on is KFuncDB's and its alone, and the key keeps it so should another container ever join it.

Allowed (optionally under a /v1.NN version prefix), with only the listed query parameters:
  GET|HEAD /_ping          GET /version
  GET /containers/json                 (all, limit, size, filters)
  GET /containers/<id>/json            (size)          Config.Env is removed: it may hold other services' secrets
  GET /containers/<id>/logs            (stdout, stderr, since, until, timestamps, tail; follow must stay off)
"""
from __future__ import annotations

import hmac
import http.client
import json
import logging
import os
import re
import signal
import socket
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOCKET = os.environ.get("DOCKER_PROXY_SOCKET", "/var/run/docker.sock")
PORT = int(os.environ.get("DOCKER_PROXY_PORT", "2375"))
MAX_RESPONSE = int(os.environ.get("DOCKER_PROXY_MAX_RESPONSE_BYTES", str(16 * 1024 * 1024)))
TIMEOUT = float(os.environ.get("DOCKER_PROXY_TIMEOUT_S", "30"))
KEY_FILE = os.environ.get("DOCKER_PROXY_KEY_FILE", "")

_VERSION = r"(?:/v1\.[0-9]{1,2})?"
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
# (methods, path regex, allowed query parameters, response filter)
RULES = [
    ({"GET", "HEAD"}, re.compile(rf"{_VERSION}/_ping"), set(), None),
    ({"GET"}, re.compile(rf"{_VERSION}/version"), set(), None),
    ({"GET"}, re.compile(rf"{_VERSION}/containers/json"), {"all", "limit", "size", "filters"}, None),
    ({"GET"}, re.compile(rf"{_VERSION}/containers/{_ID}/json"), {"size"}, "redact_env"),
    ({"GET"}, re.compile(rf"{_VERSION}/containers/{_ID}/logs"),
     {"stdout", "stderr", "since", "until", "timestamps", "tail", "follow"}, None),
]
_FALSE = {"", "0", "false", "False"}

log = logging.getLogger("docker-socket-proxy")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def decide(method: str, target: str):
    """(rule filter, None) when allowed, (None, reason) when refused."""
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or ".." in parsed.path or "%" in parsed.path:
        return None, "malformed request target"
    if "#" in target:
        # A client never sends a fragment; one here hides the rest of the target from the check.
        return None, "a fragment in the request target is not allowed"
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    for methods, pattern, params, response_filter in RULES:
        if not pattern.fullmatch(parsed.path):
            continue
        if method not in methods:
            return None, f"{method} {parsed.path} is not allowed (read-only proxy)"
        extra = sorted(set(query) - params)
        if extra:
            return None, f"query parameter(s) {', '.join(extra)} not allowed on {parsed.path}"
        if any(value not in _FALSE for value in query.get("follow", [])):
            return None, "follow=true is not allowed: responses must end"
        return response_filter or "", None
    return None, f"{method} {parsed.path} is not allowed (read-only proxy)"


def forwarded_target(target: str) -> str:
    """What the engine receives: the path and the query pairs decide() checked, re-encoded, nothing else."""
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.urlencode(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    return parsed.path + (f"?{query}" if query else "")


def redact_env(body: bytes) -> bytes:
    data = json.loads(body)
    if isinstance(data.get("Config"), dict) and "Env" in data["Config"]:
        data["Config"]["Env"] = ["<removed by docker-socket-proxy>"]
    return json.dumps(data).encode()


def read_key(path: str) -> str:
    """The key every request must carry ("" without a key file). A key file that cannot be read stops the start."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        key = handle.read().strip()
    if len(key) < 16:
        raise ValueError(f"the key in {path} is shorter than 16 characters")
    return key


class Handler(BaseHTTPRequestHandler):
    server_version = "docker-socket-proxy"
    sys_version = ""
    key = ""

    def authorised(self) -> bool:
        if not self.key:
            return True
        given = self.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), self.key.encode())

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    def refuse(self, status: int, message: str):
        data = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        if not self.authorised():
            log.warning("refused %s %s from %s: missing or wrong key", self.command, self.path,
                        self.address_string())
            return self.refuse(401, "missing or wrong key")
        response_filter, reason = decide(self.command, self.path)
        if reason:
            log.warning("refused %s %s: %s", self.command, self.path, reason)
            return self.refuse(403, reason)
        if self.headers.get("Content-Length", "0") not in ("", "0") or self.headers.get("Transfer-Encoding"):
            return self.refuse(403, "request bodies are not allowed")
        connection = UnixConnection(SOCKET, TIMEOUT)
        try:
            connection.request(self.command, forwarded_target(self.path), headers={"Host": "docker"})
            upstream = connection.getresponse()
            body = upstream.read(MAX_RESPONSE + 1)
            if len(body) > MAX_RESPONSE:
                return self.refuse(502, f"engine response larger than {MAX_RESPONSE} bytes; ask for less (tail)")
            if response_filter == "redact_env" and upstream.status == 200:
                body = redact_env(body)
            self.send_response(upstream.status)
            for name in ("Content-Type", "Api-Version", "Docker-Experimental", "Ostype"):
                if upstream.getheader(name):
                    self.send_header(name, upstream.getheader(name))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (OSError, http.client.HTTPException, ValueError) as error:
            log.error("engine request failed: %s", error)
            self.refuse(502, "the Docker engine did not answer")
        finally:
            connection.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any  # noqa: N815


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(sys.argv) > 1 and sys.argv[1] == "healthcheck":
        # Healthy = the proxy answers and the engine behind it answers _ping through it.
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        key = read_key(KEY_FILE)
        connection.request("GET", "/_ping", headers={"Authorization": f"Bearer {key}"} if key else {})
        response = connection.getresponse()
        return 0 if response.status == 200 and response.read() == b"OK" else 1
    try:
        Handler.key = read_key(KEY_FILE)
    except (OSError, ValueError) as error:
        log.error("refusing to start: %s", error)
        return 2
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("forwarding the allowlisted read-only calls on :%d to %s (%s)", PORT, SOCKET,
             "key required" if Handler.key else "no key")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
