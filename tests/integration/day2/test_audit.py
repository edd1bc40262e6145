"""playbooks/audit.yml against the shared full-mode deployment: a fresh deployment passes; a port published by a
stack container, a 0644 .env file, a UI whose Caddy site lost forward_auth and a widened KFuncDB policy each make
it fail naming the check (and only that check). Every accident is undone in a ``finally`` so the later day-2
modules find the deployment as it was; the last test proves that by auditing clean again."""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from stacklib import REPO_ROOT, StackDeployment, free_port

pytestmark = pytest.mark.integration

CHECKS = ("sso", "secrets", "ports", "api_clients", "backup", "kfuncdb", "images", "docker_socket", "privileges",
          "secret_exposure")
# The backup check passes only once roles/backup deploys the registry's backup service (it may not be in the tree
# yet); until then it is the one expected failure, and it must say why.
BACKUP_ROLE = (REPO_ROOT / "roles" / "backup" / "tasks" / "main.yml").exists()
EXPECTED_FAILURES = [] if BACKUP_ROLE else ["backup"]
DEFAULT_CAPS = "host.shell.read,host.docker.inspect"


@pytest.fixture(name="stack")
def stack_fixture(full_stack):
    """The day-2 package's shared full-mode deployment (conftest.py)."""
    return full_stack


def audit(stack: StackDeployment, **overrides):
    """Run the audit; its outcome, output and the report it wrote (latest.json)."""
    run = stack.playbook("playbooks/audit.yml", **overrides)
    report = json.loads((stack.base_dir / "audit" / "latest.json").read_text())
    return run, report


def check(report, check_id):
    return next(c for c in report["checks"] if c["id"] == check_id)


def assert_fails_only(run, report, check_id, *culprits):
    """The run failed, naming ``check_id``; that check failed naming each culprit; no other check newly failed."""
    assert run.returncode != 0, run.output[-3000:]
    assert sorted(report["failed"]) == sorted([check_id] + EXPECTED_FAILURES), report["failed"]
    assert "Audit failed: " in run.output and check_id in run.output.split("Audit failed: ", 1)[1].split(".")[0]
    failures = " ".join(check(report, check_id)["failures"])
    for culprit in culprits:
        assert culprit in failures, failures


def test_a_fresh_deployment_passes_the_audit(stack):
    run, report = audit(stack)
    assert report["failed"] == EXPECTED_FAILURES, [c for c in report["checks"] if c["status"] == "fail"]
    if BACKUP_ROLE:
        assert run.returncode == 0, run.output[-3000:]
    else:
        assert run.returncode != 0
        assert "no 'backup' service" in " ".join(check(report, "backup")["failures"])
    assert [c["id"] for c in report["checks"]] == list(CHECKS)
    assert report["prefix"] == stack.prefix and report["mode"] == "full"
    # Evidence, not just verdicts: every vhost was asked, the UIs sent the browser to the portal.
    sso = " ".join(check(report, "sso")["evidence"])
    for host in ("open-webui", "litellm", "localai", "kfuncdb", "lam"):
        assert f"{host}.{stack.domain}/ (sso" in sso and f"https://auth.{stack.domain}" in sso, sso
    assert f"api.litellm.{stack.domain}/v1/models (api): 401" in sso
    assert "public by intent" in sso
    # The engine NATs Caddy's ports (no userland proxy); the local inventory's wider allowlist says why.
    clients = check(report, "api_clients")["evidence"]
    assert clients[0].startswith("no docker-proxy process relays Caddy's ports"), clients
    assert any(line.startswith(f"api.litellm.{stack.domain}: admits 172.16.0.0/12 beyond the private and local "
                               "ranges, by intent (this machine's own programs") for line in clients), clients
    privileges = " ".join(check(report, "privileges")["evidence"])
    assert f"{stack.prefix}caddy: user 1000:1000, cap_add NET_BIND_SERVICE" in privileges
    sockets = " ".join(check(report, "docker_socket")["evidence"])
    assert f"{stack.prefix}docker-proxy mounts /var/run/docker.sock" in sockets and "read-only" in sockets
    # The reports: a timestamped pair and latest.*, the JSON parses (above), the Markdown names every check.
    reports = sorted(p.name for p in (stack.base_dir / "audit").iterdir())
    assert {"latest.json", "latest.md"} <= set(reports)
    assert any(n.startswith("audit-") and n.endswith(".json") for n in reports)
    assert any(n.startswith("audit-") and n.endswith(".md") for n in reports)
    stamped = next(n for n in reports if n.startswith("audit-") and n.endswith(".json"))
    assert json.loads((stack.base_dir / "audit" / stamped).read_text())["checks"]
    markdown = (stack.base_dir / "audit" / "latest.md").read_text()
    for check_id in CHECKS:
        assert f"`{check_id}`" in markdown
    assert (stack.base_dir / "audit").stat().st_mode & 0o777 == 0o700


def test_a_published_port_fails_the_ports_check(stack):
    port = free_port()
    intruder = stack.docker.containers.run(
        "datamancy-test/debian:bookworm", ["sleep", "infinity"], name=f"{stack.prefix}intruder-{uuid.uuid4().hex[:4]}",
        detach=True, ports={"8080/tcp": ("127.0.0.1", port)}, user="1000:1000", cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"], labels={"datamancy.test": stack.run_id},
    )
    try:
        run, report = audit(stack)
        assert_fails_only(run, report, "ports", f"{intruder.name} publishes 127.0.0.1:{port}->8080/tcp")
    finally:
        intruder.remove(force=True)


def test_a_userland_proxy_on_caddys_port_fails_the_api_clients_check(stack):
    """Docker's userland proxy: a docker-proxy process relays a published port from a host socket, and every
    client arrives from the bridge gateway. The engine here NATs (no such process); the engine's own docker-proxy
    binary, started as the engine would for Caddy's HTTPS port (on another loopback address, beside the engine's
    port reservation on 127.0.0.1), is what the audit finds on an engine with the proxy on."""
    caddy_ip = next(iter(stack.container("caddy").attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    # docker-proxy reports its start to the engine on descriptor 3 and stops when that is missing.
    relay = subprocess.Popen(["sh", "-c", f"exec docker-proxy -proto tcp -host-ip 127.0.0.2 -host-port "
                              f"{stack.https_port} -container-ip {caddy_ip} -container-port 443 3>/dev/null"])
    try:
        time.sleep(1)
        assert relay.poll() is None, "docker-proxy did not start"
        run, report = audit(stack)
        assert_fails_only(run, report, "api_clients", f"-host-port {stack.https_port}",
                          "Docker's userland proxy relays Caddy's ports", f"api.litellm.{stack.domain}")
    finally:
        relay.terminate()
        relay.wait(timeout=10)


def test_a_world_readable_env_file_fails_the_secrets_check(stack):
    env_file = stack.base_dir / "backup" / "config" / "repository.env"
    mode = env_file.stat().st_mode & 0o777
    assert mode == 0o600
    env_file.chmod(0o644)
    try:
        run, report = audit(stack)
        assert_fails_only(run, report, "secrets", f"{env_file}: 0644 root")
    finally:
        env_file.chmod(mode)


def test_a_ui_made_public_without_intent_fails_the_sso_check(stack):
    """Someone edits the rendered Caddyfile and drops forward_auth from Open WebUI's site, then reloads Caddy the
    way the caddy role does: the registry still says sso, the vhost now answers without a session."""
    caddyfile = stack.base_dir / "caddy" / "etc" / "Caddyfile"
    original = caddyfile.read_text()
    site = original.index(f"open-webui.{stack.domain} {{")
    end = original.index("\n}\n", site)
    assert original.count("import authelia", site, end) == 1
    edited = original[:site] + original[site:end].replace("\t\timport authelia\n", "") + original[end:]

    def reload_caddy():
        code, output = stack.exec("caddy", ["caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter",
                                            "caddyfile", "--force"])
        assert code == 0, output

    caddyfile.write_text(edited)  # in place: owner and mode stay
    try:
        reload_caddy()
        run, report = audit(stack)
        assert_fails_only(run, report, "sso", f"open-webui.{stack.domain}/ (sso): 200",
                          "answers without a session")
    finally:
        caddyfile.write_text(original)
        reload_caddy()


def test_a_widened_kfuncdb_policy_fails_the_kfuncdb_check(stack):
    def converge(caps):
        result = stack.playbook("tests/integration/day2/kfuncdb_policy.yml", kfuncdb_allow_caps=caps)
        assert result.returncode == 0, result.output[-4000:]

    converge(DEFAULT_CAPS + ",browser.control")
    try:
        run, report = audit(stack)
        assert_fails_only(run, report, "kfuncdb", "widened beyond the audited maximum: browser.control")
        # Intended widening: the operator raises the audit's maximum with it, and the check passes.
        run, report = audit(stack, audit_kfuncdb_max_capabilities=DEFAULT_CAPS.split(",") + ["browser.control"])
        assert check(report, "kfuncdb")["status"] == "pass", check(report, "kfuncdb")
    finally:
        converge(DEFAULT_CAPS)


def test_after_the_accidents_the_deployment_audits_clean_again(stack):
    run, report = audit(stack)
    assert report["failed"] == EXPECTED_FAILURES, [c for c in report["checks"] if c["status"] == "fail"]
    assert (run.returncode == 0) == (not EXPECTED_FAILURES)
