"""The capability policy and the tool registry: parse rules, load-time and call-time enforcement, schemas."""
from __future__ import annotations

import logging
import time

import pytest

from kfuncdb import app as kapp
from kfuncdb import schema
from kfuncdb.plugins.ssh import SshRunner, StackopsSshPlugin
from kfuncdb.policy import CapabilityRefused, Policy, PolicyError
from kfuncdb.registry import (ConfigError, InvalidArguments, Plugin, Registry, ToolSpec, ToolTimeout,
                              UnknownTool)

OBJ = {"type": "object", "properties": {}, "additionalProperties": False}


class RecordingPlugin(Plugin):
    """A plugin whose activation is observable, declaring whatever capabilities a test needs."""

    def __init__(self, pid, caps, tools=("probe",), handler=None):
        self.id = pid
        self.capabilities = frozenset(caps)
        self.tool_names = tools
        self.activated = False
        self.handler = handler or (lambda args, deadline: {"ok": True, "args": args})

    def specs(self):
        return [ToolSpec(name, f"tool {name}", {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
                           "word": {"type": "string", "enum": ["a", "b"]}},
            "additionalProperties": False}) for name in self.tool_names]

    def activate(self, env):
        self.activated = True
        return {name: self.handler for name in self.tool_names}


def test_empty_policy_allows_nothing_privileged():
    for value in (None, "", "   "):
        assert Policy.parse(value).allowed == frozenset()


def test_policy_parses_the_listed_capabilities():
    assert Policy.parse(" host.shell.read , host.docker.inspect").allowed == {"host.shell.read", "host.docker.inspect"}


def test_unknown_capability_is_an_error_naming_it():
    with pytest.raises(PolicyError, match="'host.everything'"):
        Policy.parse("host.shell.read,host.everything")


def test_blank_item_in_policy_is_refused():
    with pytest.raises(PolicyError, match="empty item"):
        Policy.parse("host.shell.read,,host.docker.inspect")


def test_refusal_names_the_missing_capability():
    with pytest.raises(CapabilityRefused) as refused:
        Policy.parse("host.shell.read").check("t", {"host.shell.read", "host.ssh.exec"})
    assert refused.value.missing == ["host.ssh.exec"]
    assert "host.ssh.exec" in str(refused.value)


def test_disallowed_plugin_is_never_activated_and_its_tools_are_listed_unavailable():
    registry = Registry(Policy.parse("host.shell.read"), timeout_s=5)
    refused = RecordingPlugin("ssh", {"host.ssh.exec"}, tools=("remote",))
    allowed = RecordingPlugin("shell", {"host.shell.read"}, tools=("local",))
    registry.load(refused, {})
    registry.load(allowed, {})
    assert not refused.activated and allowed.activated
    listed = {tool["name"]: tool for tool in registry.describe()}
    assert listed["remote"]["available"] is False
    assert listed["remote"]["missingCapabilities"] == ["host.ssh.exec"]
    assert listed["local"]["available"] is True and listed["local"]["capabilities"] == ["host.shell.read"]
    assert [t.spec.name for t in registry.available()] == ["local"]
    with pytest.raises(CapabilityRefused, match="host.ssh.exec"):
        registry.call("remote", {})


def test_empty_policy_still_runs_tools_that_need_no_capability():
    registry = Registry(Policy.parse(""), timeout_s=5)
    registry.load(RecordingPlugin("llm", set(), tools=("helper",)), {})
    registry.load(RecordingPlugin("shell", {"host.shell.read"}, tools=("local",)), {})
    assert registry.call("helper", {})[0]["ok"] is True
    with pytest.raises(CapabilityRefused):
        registry.call("local", {})


def test_policy_is_checked_again_at_every_call():
    registry = Registry(Policy.parse("host.shell.read"), timeout_s=5)
    registry.load(RecordingPlugin("shell", {"host.shell.read"}), {})
    assert registry.call("probe", {})[0]["ok"]
    # A tool that was activated at load is still refused once the policy no longer grants it.
    registry.policy = Policy.parse("")
    with pytest.raises(CapabilityRefused):
        registry.call("probe", {})


def test_unknown_tool():
    with pytest.raises(UnknownTool):
        Registry(Policy.parse(""), timeout_s=1).call("nope", {})


def test_arguments_are_validated_and_defaults_applied():
    registry = Registry(Policy.parse(""), timeout_s=5)
    registry.load(RecordingPlugin("p", set()), {})
    assert registry.call("probe", {"word": "a"})[0]["args"] == {"n": 2, "word": "a"}
    for bad, message in [({"n": "3"}, "'n' must be of type integer"), ({"n": True}, "integer"),
                         ({"n": 9}, "<= 5"), ({"word": "c"}, "one of a, b"), ({"x": 1}, "not a parameter"),
                         ([], "JSON object")]:
        with pytest.raises(InvalidArguments, match=message):
            registry.call("probe", bad)


def test_schema_required_and_pattern():
    spec = {"type": "object", "properties": {"c": {"type": "string", "pattern": "[a-z]+", "maxLength": 3}},
            "required": ["c"]}
    assert schema.validate(spec, {}) == ["'c' is required"]
    assert schema.validate(spec, {"c": "ab;"}) == ["'c' does not match [a-z]+"]
    assert schema.validate(spec, {"c": "abcd"})[0].endswith("at most 3 characters")
    assert schema.validate(spec, {"c": "abc"}) == []


def test_invalid_tool_schemas_and_duplicate_names_are_refused_at_load():
    registry = Registry(Policy.parse(""), timeout_s=1)

    class Broken(RecordingPlugin):
        def specs(self):
            return [ToolSpec("broken", "", {"type": "object", "properties": {"x": {"type": "date"}}})]

    with pytest.raises(schema.SchemaError):
        registry.load(Broken("b", set()), {})
    registry.load(RecordingPlugin("one", set()), {})
    with pytest.raises(ConfigError, match="already registered"):
        registry.load(RecordingPlugin("two", set()), {})


def test_plugin_declaring_an_unknown_capability_is_refused():
    with pytest.raises(ConfigError, match="host.root"):
        Registry(Policy.parse(""), timeout_s=1).load(RecordingPlugin("x", {"host.root"}), {})


def test_slow_tool_times_out_at_the_deadline():
    registry = Registry(Policy.parse(""), timeout_s=0.3)
    registry.load(RecordingPlugin("slow", set(), handler=lambda args, deadline: time.sleep(3)), {})
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="0.3 s"):
        registry.call("probe", {})
    assert time.monotonic() - started < 1.5


def test_main_refuses_to_start_on_an_unknown_capability(caplog):
    with caplog.at_level(logging.ERROR):
        assert kapp.main({"KFUNCDB_ALLOW_CAPS": "host.shell.read,host.sudo"}) == 2
    assert "'host.sudo'" in caplog.text and "refusing to start" in caplog.text


def test_allowed_ssh_without_configuration_stops_startup():
    with pytest.raises(ConfigError, match="KFUNCDB_SSH_HOST"):
        kapp.App({"KFUNCDB_ALLOW_CAPS": "host.ssh.exec"})
    # ...but without the capability the same missing configuration is irrelevant.
    kapp.App({"KFUNCDB_ALLOW_CAPS": ""})


def test_allowed_docker_inspect_needs_the_proxy_url():
    with pytest.raises(ConfigError, match="KFUNCDB_DOCKER_URL"):
        kapp.App({"KFUNCDB_ALLOW_CAPS": "host.docker.inspect"})


def test_ssh_refuses_an_empty_known_hosts(tmp_path):
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("# nothing pinned\n")
    env = {"KFUNCDB_SSH_HOST": "h", "KFUNCDB_SSH_KEY_FILE": str(key), "KFUNCDB_SSH_KNOWN_HOSTS_FILE": str(known)}
    with pytest.raises(ConfigError, match="trust on first use"):
        StackopsSshPlugin().activate(env)


def test_ssh_command_line_pins_the_host_key_and_never_uses_a_shell():
    runner = SshRunner("10.0.0.1", "22", "stackops", "/run/secrets/k", "/etc/kfuncdb/known_hosts", "datamancy-host")
    argv = runner.argv("docker ps")
    options = {argv[i + 1] for i, word in enumerate(argv) if word == "-o"}
    assert {"StrictHostKeyChecking=yes", "BatchMode=yes", "UserKnownHostsFile=/etc/kfuncdb/known_hosts",
            "GlobalKnownHostsFile=/dev/null", "HostKeyAlias=datamancy-host", "UpdateHostKeys=no"} <= options
    assert argv[-3:] == ["--", "stackops@10.0.0.1", "docker ps"]


def test_ssh_tools_refuse_metacharacters_before_any_connection(tmp_path):
    registry = Registry(Policy.parse("host.ssh.exec"), timeout_s=5)
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("datamancy-host ssh-ed25519 AAAA\n")
    registry.load(StackopsSshPlugin(), {"KFUNCDB_SSH_HOST": "192.0.2.1", "KFUNCDB_SSH_KEY_FILE": str(key),
                                        "KFUNCDB_SSH_KNOWN_HOSTS_FILE": str(known)})
    for name in ("web;id", "$(id)", "a b", "../x"):
        with pytest.raises(InvalidArguments):
            registry.call("stackops_docker_restart", {"container": name})


def test_plugins_dir_plugins_get_the_same_policy(tmp_path):
    (tmp_path / "extra.py").write_text(
        "from kfuncdb.registry import Plugin, ToolSpec\n"
        "class P(Plugin):\n"
        "    id = 'extra'\n"
        "    capabilities = frozenset({'browser.control'})\n"
        "    def specs(self):\n"
        "        return [ToolSpec('screenshot', 'd', {'type': 'object', 'properties': {}})]\n"
        "    def activate(self, env):\n"
        "        raise AssertionError('must not be activated')\n"
        "PLUGINS = [P()]\n")
    application = kapp.App({"KFUNCDB_ALLOW_CAPS": "", "KFUNCDB_PLUGINS_DIR": str(tmp_path)})
    with pytest.raises(CapabilityRefused, match="browser.control"):
        application.registry.call("screenshot", {})
