"""The HTTP API over real loopback connections: success paths and every structured error."""
from __future__ import annotations

import http.client
import json
import logging
import time

import pytest
import requests

from kfuncdb import app as kapp
from kfuncdb.plugins.shell import ShellReadPlugin
from kfuncdb.registry import Plugin, ToolError, ToolSpec


class TestPlugin(Plugin):
    __test__ = False
    id = "test"
    capabilities = frozenset()

    def specs(self):
        return [
            ToolSpec("echo", "echo", {"type": "object", "properties": {"text": {"type": "string"}},
                                      "required": ["text"], "additionalProperties": False}),
            ToolSpec("sleep", "sleep", {"type": "object", "properties": {"s": {"type": "number"}}}),
            ToolSpec("fail", "fail", {"type": "object", "properties": {}}),
            ToolSpec("crash", "crash", {"type": "object", "properties": {}}),
        ]

    def activate(self, env):
        def fail(args, deadline):
            raise ToolError("remote refused")

        def crash(args, deadline):
            raise RuntimeError("secret internals")

        return {"echo": lambda a, d: {"text": a["text"]}, "sleep": lambda a, d: time.sleep(a.get("s", 0)) or "slept",
                "fail": fail, "crash": crash}


class SshLike(Plugin):
    id = "ssh-like"
    capabilities = frozenset({"host.ssh.exec"})

    def specs(self):
        return [ToolSpec("remote_ps", "needs ssh", {"type": "object", "properties": {}})]

    def activate(self, env):  # pragma: no cover - must never run under these policies
        raise AssertionError("activated a refused plugin")


@pytest.fixture
def api(serve):
    def _api(env=None, plugins=None):
        env = dict({"KFUNCDB_ALLOW_CAPS": "host.shell.read", "KFUNCDB_TOOL_TIMEOUT_S": "0.5",
                    "KFUNCDB_MAX_BODY_BYTES": "2048"}, **(env or {}))
        application = kapp.App(env, plugins=plugins if plugins is not None else
                               [TestPlugin(), ShellReadPlugin(), SshLike()])
        return serve(application.make_server("127.0.0.1", 0)).url
    return _api


JSON = {"Content-Type": "application/json"}


def call(url, name, args=None, **kwargs):
    return requests.post(f"{url}/call-tool", json={"name": name, "args": args or {}}, timeout=10, **kwargs)


def test_healthz(api):
    assert requests.get(f"{api()}/healthz", timeout=5).json() == {"status": "ok"}


def test_tools_lists_definitions_with_plugin_capabilities_and_availability(api):
    tools = {t["name"]: t for t in requests.get(f"{api()}/tools", timeout=5).json()}
    assert tools["host_info"]["plugin"] == "host-shell"
    assert tools["host_info"]["capabilities"] == ["host.shell.read"]
    assert tools["host_info"]["parameters"]["properties"]["command"]["enum"]
    assert tools["echo"]["available"] and tools["echo"]["capabilities"] == []
    assert tools["remote_ps"]["available"] is False


def test_call_tool_returns_result_and_elapsed(api):
    response = call(api(), "echo", {"text": "hi"})
    assert response.status_code == 200
    assert response.json()["result"] == {"text": "hi"}
    assert isinstance(response.json()["elapsedMs"], int)


def test_allowlisted_command_runs_without_a_shell(api):
    body = call(api(), "host_info", {"command": "kernel"}).json()
    assert body["result"]["command"] == "uname -a" and body["result"]["stdout"].startswith("Linux")


def test_404_unknown_tool(api):
    response = call(api(), "nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_tool"


def test_400_bad_arguments(api):
    url = api()
    for args in ({}, {"text": 5}, {"text": "x", "extra": 1}):
        response = call(url, "echo", args)
        assert response.status_code == 400, args
        assert response.json()["error"]["code"] == "invalid_arguments"
    # Arbitrary words never reach an argv: only the enum's names are accepted.
    response = call(url, "host_info", {"command": "uptime; rm -rf /"})
    assert response.status_code == 400


def test_400_malformed_bodies(api):
    url = api()
    assert requests.post(f"{url}/call-tool", data=b"{not json", headers=JSON, timeout=5).status_code == 400
    response = requests.post(f"{url}/call-tool", json={"args": {}}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


def test_413_body_too_large_is_refused_before_reading(api):
    response = call(api(), "echo", {"text": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_411_without_content_length(api):
    url = api()
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    connection.putrequest("POST", "/call-tool")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 411


def test_504_tool_timeout(api):
    started = time.monotonic()
    response = call(api(), "sleep", {"s": 5})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "tool_timeout"
    assert time.monotonic() - started < 2


def test_403_refused_capability_names_it(api):
    response = call(api(), "remote_ps")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "capability_refused" and error["capabilities"] == ["host.ssh.exec"]
    assert "host.ssh.exec" in error["message"]


def test_empty_policy_refuses_the_shell_tool(api):
    response = call(api({"KFUNCDB_ALLOW_CAPS": ""}), "host_info", {"command": "uptime"})
    assert response.status_code == 403
    assert response.json()["error"]["capabilities"] == ["host.shell.read"]


def test_502_tool_failure_and_500_without_internals(api):
    url = api()
    response = call(url, "fail")
    assert response.status_code == 502 and "remote refused" in response.json()["error"]["message"]
    response = call(url, "crash")
    assert response.status_code == 500 and "secret internals" not in response.text


def test_404_and_405_for_other_paths(api):
    url = api()
    assert requests.get(f"{url}/admin", timeout=5).json()["error"]["code"] == "not_found"
    assert requests.get(f"{url}/call-tool", timeout=5).status_code == 405


def test_the_page_shows_every_tool_its_needs_and_the_policy_escaped_and_inert(api):
    url = api()
    response = requests.get(f"{url}/", headers={"Remote-User": "<b>ada</b>"}, timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "Capabilities this host grants (KFUNCDB_ALLOW_CAPS): <code>host.shell.read</code>" in page
    # A refused plugin's tool is listed with what it lacks; the others are available.
    assert "<code>remote_ps</code>" in page and "refused: needs host.ssh.exec" in page
    tools = requests.get(f"{url}/tools", timeout=5).json()
    assert page.count('class="available"') == len([tool for tool in tools if tool["available"]])
    # The signed-in name is text, never markup; the page can run nothing and submit nothing.
    assert "Signed in as <strong>&lt;b&gt;ada&lt;/b&gt;</strong>" in page
    assert "<script" not in page and "<form" not in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert requests.post(f"{url}/", json={}, timeout=5).status_code == 405


def test_api_key_when_configured(api, tmp_path):
    key = tmp_path / "key"
    key.write_text("k" * 32 + "\n")
    url = api({"KFUNCDB_API_KEY_FILE": str(key)})
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200  # health stays open for the engine
    assert requests.get(f"{url}/tools", timeout=5).status_code == 401
    assert requests.get(f"{url}/", timeout=5).status_code == 401  # the page lists the policy: keyed like /tools
    assert requests.get(f"{url}/tools", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert requests.get(f"{url}/tools", headers={"Authorization": "Bearer " + "k" * 32}, timeout=5).status_code == 200


def test_errors_are_json_everywhere(api):
    response = requests.post(f"{api()}/call-tool", data=b"[]", headers=JSON, timeout=5)
    assert response.headers["Content-Type"] == "application/json"
    assert set(json.loads(response.text)["error"]) >= {"code", "message"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json-seq"])
def test_a_post_that_is_not_json_is_refused(api, content_type):
    """What a page on another site can send without a CORS preflight (text/plain, forms) runs nothing."""
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/call-tool", "/v1/chat/completions"):
        response = requests.post(f"{api()}{path}", data=b'{"name": "echo", "args": {"text": "x"}}', headers=headers,
                                 timeout=5)
        assert response.status_code == 415, (path, content_type, response.text)
        assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling vhost of the same domain: exactly the attack
    {"Origin": "https://open-webui.example.test"},
    {"Origin": "null"},
])
def test_a_cross_site_post_is_refused(api, headers):
    response = call(api(), "echo", {"text": "x"}, headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_site_refused"


def test_a_same_origin_post_is_served(api):
    url = api()
    host = url.removeprefix("http://")
    response = call(url, "echo", {"text": "x"}, headers={"Origin": f"https://{host}", "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"text": "x"}


def test_every_tool_call_is_logged_with_the_user_caddy_forwarded(api, caplog):
    caplog.set_level(logging.INFO, logger="kfuncdb.audit")
    url = api()
    assert call(url, "echo", {"text": "x"}, headers={"Remote-User": "alice"}).status_code == 200
    assert call(url, "remote_ps", headers={"Remote-User": "bob"}).status_code == 403
    assert call(url, "echo", {"text": "x"}).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "kfuncdb.audit"]
    assert any(line.startswith("tool echo called by alice: ok in") for line in lines), lines
    assert "tool remote_ps called by bob: refused or failed (capability_refused)" in lines
    assert any(line.startswith("tool echo called by (no Remote-User)") for line in lines), lines


def test_the_port_is_checked_against_its_range():
    with pytest.raises(kapp.ConfigError, match="KFUNCDB_PORT must be at most 65535"):
        kapp.Settings.from_env({"KFUNCDB_PORT": "70000"})
