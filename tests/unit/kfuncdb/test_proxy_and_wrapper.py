"""The read-only Docker API proxy's allowlist and the stackops forced-command wrapper, run as the real script
with a fake docker CLI that records its argv (so the test sees exactly what would be executed)."""
from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PROXY = REPO_ROOT / "roles" / "docker_socket_proxy" / "files" / "image" / "docker_socket_proxy.py"
WRAPPER = REPO_ROOT / "roles" / "stackops" / "files" / "stackops-wrapper"


@pytest.fixture(scope="module")
def proxy():
    spec = importlib.util.spec_from_file_location("docker_socket_proxy", PROXY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method,target", [
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/v1.41/containers/json?all=1"),
    ("GET", "/containers/json?filters=%7B%22name%22%3A%5B%22x%22%5D%7D"), ("GET", "/containers/web-1/json"),
    ("GET", "/containers/web/logs?stdout=1&stderr=1&tail=50"), ("GET", "/containers/web/logs?follow=0"),
])
def test_proxy_allows_the_read_calls(proxy, method, target):
    assert proxy.decide(method, target)[1] is None


@pytest.mark.parametrize("method,target", [
    ("POST", "/containers/web/restart"), ("POST", "/containers/create"), ("DELETE", "/containers/web"),
    ("POST", "/containers/web/exec"), ("POST", "/exec/abc/start"), ("GET", "/images/json"),
    ("POST", "/images/create?fromImage=x"), ("GET", "/secrets"), ("POST", "/volumes/create"),
    ("GET", "/containers/web/logs?follow=1"), ("GET", "/containers/web/logs?follow=true"),
    ("GET", "/containers/web/archive?path=/etc"), ("GET", "/containers/web/export"),
    ("GET", "/containers/json?x=1"), ("GET", "/containers/../images/json"), ("GET", "/containers/%2e%2e/json"),
    ("GET", "http://other/containers/json"), ("PUT", "/containers/web/archive"), ("GET", "/v1.41/events"),
    ("POST", "/_ping"),
])
def test_proxy_refuses_everything_else(proxy, method, target):
    assert proxy.decide(method, target)[1], (method, target)


@pytest.fixture
def proxied(proxy, tmp_path, monkeypatch):
    """The proxy as a real server on loopback in front of a fake engine on a unix socket that records the request
    targets it receives: what the engine would see."""
    seen = []

    class Engine(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            body = b"log line\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):
            # A unix peer has no address; http.server's logging wants a (host, port).
            return super().get_request()[0], ("engine", 0)

    engine = UnixServer(str(tmp_path / "docker.sock"), Engine)
    monkeypatch.setattr(proxy, "SOCKET", str(tmp_path / "docker.sock"))
    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), proxy.Handler)
    for server in (engine, front):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def get(target, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", front.server_address[1], timeout=10)
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    yield get, seen
    for server in (engine, front):
        server.shutdown()
        server.server_close()


def test_the_fragment_trick_never_reaches_the_engine(proxied):
    get, seen = proxied
    # urlsplit cuts at '#', so the check once saw stdout=1 while the engine got follow=1 (an endless stream).
    assert get("/containers/web/logs?stdout=1#&follow=1") == 403
    assert get("/containers/web/logs?stdout=1%23&follow=1") == 403
    assert seen == []


def test_the_engine_receives_exactly_the_checked_path_and_query(proxied):
    get, seen = proxied
    assert get("/v1.41/containers/web/logs?stdout=1&tail=50&follow=0") == 200
    assert get("/containers/web/logs?std%6Fut=1") == 200
    assert seen == ["/v1.41/containers/web/logs?stdout=1&tail=50&follow=0", "/containers/web/logs?stdout=1"]


def test_with_a_key_every_request_needs_it(proxy, proxied, monkeypatch, tmp_path):
    get, seen = proxied
    key_file = tmp_path / "api_key"
    key_file.write_text("k" * 64 + "\n")
    monkeypatch.setattr(proxy.Handler, "key", proxy.read_key(str(key_file)))
    assert get("/_ping") == 401
    assert get("/_ping", {"Authorization": "Bearer " + "x" * 64}) == 401
    assert get("/_ping", {"Authorization": "k" * 64}) == 401
    assert seen == []
    assert get("/_ping", {"Authorization": "Bearer " + "k" * 64}) == 200
    assert seen == ["/_ping"]


def test_a_short_or_missing_key_file_stops_the_start(proxy, tmp_path):
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ValueError, match="shorter than 16"):
        proxy.read_key(str(short))
    with pytest.raises(OSError):
        proxy.read_key(str(tmp_path / "absent"))
    assert proxy.read_key("") == ""


def test_proxy_removes_environment_from_inspect(proxy):
    body = json.dumps({"Id": "x", "Config": {"Env": ["PASSWORD=secret"], "Image": "i"}}).encode()
    redacted = json.loads(proxy.redact_env(body))
    assert "secret" not in json.dumps(redacted) and redacted["Config"]["Image"] == "i"


@pytest.fixture
def wrapper(tmp_path):
    """The wrapper with its config path pointed at a temp file and a fake docker that prints its argv as JSON."""
    docker = tmp_path / "docker"
    docker.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "print(json.dumps({'argv': sys.argv[1:], 'env': sorted(os.environ)}))\n")
    docker.chmod(0o755)
    config = tmp_path / "wrapper.json"
    config.write_text(json.dumps({"docker": str(docker), "containers": ["web", "db-1"], "max_tail": 500}))
    script = tmp_path / "stackops-wrapper"
    script.write_text(WRAPPER.read_text().replace('CONFIG = "/etc/stackops/wrapper.json"', f'CONFIG = "{config}"'))

    def run(command, *argv):
        env = {"PATH": "/usr/bin:/bin", "SECRET_FROM_CLIENT": "x"}
        if command is not None:
            env["SSH_ORIGINAL_COMMAND"] = command
        done = subprocess.run([sys.executable, "-I", str(script), *argv], env=env, capture_output=True, text=True,
                              timeout=10, check=False)
        return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else None), done.stderr
    return run


@pytest.mark.parametrize("command,argv", [
    ("docker ps", ["ps"]),
    ("docker logs web", ["logs", "--", "web"]),
    ("docker logs --tail 20 db-1", ["logs", "--tail", "20", "--", "db-1"]),
    ("docker restart web", ["restart", "--", "web"]),
])
def test_wrapper_runs_exactly_the_allowed_commands(wrapper, command, argv):
    status, out, _unused = wrapper(command)
    assert status == 0 and out["argv"] == argv
    assert out["env"] == ["LANG", "PATH"]  # nothing from the client's environment is passed on


def test_wrapper_ignores_the_login_shell_arguments(wrapper):
    # sshd runs the forced command as `<shell> -c <command>`; the wrapper is the shell and acts on SSH data only.
    status, out, _unused = wrapper("docker ps", "-c", "/bin/sh -i")
    assert status == 0 and out["argv"] == ["ps"]


@pytest.mark.parametrize("command", [
    "docker ps; id", "docker ps && id", "docker ps | sh", "docker logs $(id)", "docker logs `id`", "docker ps\nid",
    "docker logs web > /tmp/x", "docker restart 'web'", "docker logs ../web", "docker ps &",
])
def test_wrapper_refuses_metacharacters(wrapper, command):
    status, out, err = wrapper(command)
    assert status == 126 and out is None and "refused" in err


@pytest.mark.parametrize("command", [
    "docker rm web", "docker exec web sh", "docker run x", "docker restart other", "docker logs other",
    "docker logs --tail 501 web", "docker logs --tail 0 web", "docker logs --since 1h web", "docker ps -a",
    "id", "docker", "",
])
def test_wrapper_refuses_other_commands_and_names(wrapper, command):
    status, out, err = wrapper(command)
    assert status == 126 and out is None and "refused" in err


def test_wrapper_refuses_interactive_sessions(wrapper):
    status, out, err = wrapper(None)
    assert status == 1 and "interactive" in err
