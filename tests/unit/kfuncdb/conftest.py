"""KFuncDB's unit tests run from the repository's pytest (testpaths = tests): import the package from its source
tree, and give tests an in-process server and fake upstreams (real sockets on loopback)."""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT / "kfuncdb" / "src"))


class Served:
    """A server on 127.0.0.1:<ephemeral> in a thread, stopped by the fixture."""

    def __init__(self, server):
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    started = []

    def _serve(server):
        served = Served(server)
        started.append(served)
        return served

    yield _serve
    for served in started:
        served.stop()


class FakeUpstream(BaseHTTPRequestHandler):
    """Records every request; answers with ``responder(path, body, headers) -> (status, json)``."""

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append({"method": self.command, "path": self.path, "body": body,
                                     "headers": dict(self.headers)})
        status, payload = self.server.responder(self.path, body, self.headers)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815


@pytest.fixture
def fake_upstream(serve):
    def _make(responder):
        server = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
        server.requests = []
        server.responder = responder
        return serve(server)

    return _make
