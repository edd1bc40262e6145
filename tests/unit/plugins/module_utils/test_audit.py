"""The audit's evaluation (module_utils/audit.py) on hand-made evidence: each check passes on what a fresh
deployment looks like and fails, naming the culprit, on each accident the guide's checklist is about."""
from __future__ import annotations

import copy
import datetime
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar

from ansible_collections.datamancy.stack.plugins.filter.audit import audit_markdown, audit_report
from ansible_collections.datamancy.stack.plugins.filter.registry import registry_errors
from ansible_collections.datamancy.stack.plugins.module_utils import audit

REPO = Path(__file__).resolve().parents[4]
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)
EPOCH = NOW.timestamp()
P = "t-"

SERVICES = {
    "caddy": {"cap_add": ["NET_BIND_SERVICE"], "cap_add_reason": "binds 443", "no_new_privileges": False,
              "no_new_privileges_reason": "file capability", "image_var": "caddy_image",
              "volumes": [{"name": "data", "backup": True}]},
    "authelia": {"vhosts": [{"host": "auth"}], "volumes": [{"name": "data", "backup": True}]},
    "lam": {"run_as_root": True, "run_as_root_reason": "apache", "cap_add": ["SETUID"], "cap_add_reason": "drops"},
    "kfuncdb": {},
    "docker-proxy": {"docker_socket": True, "docker_socket_reason": "read-only API for kfuncdb"},
    "backup": {"cap_add": ["DAC_READ_SEARCH"], "cap_add_reason": "reads volumes"},
}
VHOSTS = [
    {"service": "authelia", "fqdn": "auth.example.test", "policy": "public", "public_reason": "the portal"},
    {"service": "lam", "fqdn": "lam.example.test", "policy": "sso_admins", "public_reason": ""},
    {"service": "open-webui", "fqdn": "open-webui.example.test", "policy": "sso", "public_reason": ""},
    {"service": "litellm", "fqdn": "api.litellm.example.test", "policy": "api", "public_reason": "",
     "allowlist": ["10.0.0.0/8"], "allowlist_wide": [], "allowlist_reason": ""},
]
PORTAL = "auth.example.test"


def container(service, user="1000:1000", cap_add=(), nnp=True, mounts=(), ports=None, env=(), image=None,
              image_id="sha256:aaa", started=NOW - datetime.timedelta(hours=1), running=True):
    return {
        "Name": f"/{P}{service}",
        "Image": image_id,
        "Config": {"User": user, "Image": image or f"example/{service}:1.0", "Env": list(env),
                   "Labels": {"datamancy.stack.service": service}},
        "State": {"Running": running, "StartedAt": started.isoformat().replace("+00:00", ".123456789Z")},
        "HostConfig": {"CapAdd": list(cap_add) or None, "CapDrop": ["ALL"], "Privileged": False,
                       "SecurityOpt": ["no-new-privileges:true"] if nnp else None},
        "Mounts": list(mounts),
        "NetworkSettings": {"Ports": ports or {}},
    }


def fresh_containers():
    return [
        container("caddy", cap_add=["CAP_NET_BIND_SERVICE"], nnp=False, ports={
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
            "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
            "443/udp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
            "2019/tcp": None,
        }),
        container("authelia"),
        container("lam", user="", cap_add=["SETUID"]),
        container("kfuncdb", env=["KFUNCDB_ALLOW_CAPS=host.shell.read,host.docker.inspect", "HOME=/tmp"]),
        container("docker-proxy", mounts=[{"Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock",
                                           "RW": False}]),
        container("backup", cap_add=["DAC_READ_SEARCH"]),
    ]


def stat(path, mode, uid=0, mtime=EPOCH - 86400, isdir=False):
    return {"path": path, "mode": mode, "uid": uid, "pw_name": "root" if uid == 0 else str(uid), "mtime": mtime,
            "isdir": isdir, "exists": True}


def fresh_evidence():
    return {
        "host": "h1",
        "now": EPOCH,
        "containers": fresh_containers(),
        "other_containers": [],
        "image_ids": {f"example/{s}:1.0": "sha256:aaa" for s in SERVICES},
        "store_stat": dict(stat("/s", "0700", isdir=True), exists=True),
        "store_files": [stat("/s/redis_password", "0600"), stat("/s/.meta", "0600")],
        "base_files": [stat("/b/litellm/litellm.env", "0600"), stat("/b/redis/secrets/redis_password", "0400", 999)],
        "proc_net": {
            "tcp": ("  sl  local_address rem_address   st\n"
                    "   0: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
                    "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
                    "   2: 0100007F:C350 0100007F:2382 01 00000000:00000000 00:00000000 00000000     0\n"),
        },
        "probes": [
            {"fqdn": "auth.example.test", "path": "/", "status": 200, "location": ""},
            {"fqdn": "lam.example.test", "path": "/", "status": 302,
             "location": "https://auth.example.test/?rd=https%3A%2F%2Flam.example.test%2F"},
            {"fqdn": "open-webui.example.test", "path": "/", "status": 401, "location": ""},
            {"fqdn": "api.litellm.example.test", "path": "/v1/models", "status": 401, "location": ""},
        ],
        "last_success": {"started": "2026-11-23T03:00:00Z", "finished": "2026-11-23T03:05:00Z", "ok": True,
                         "snapshot_id": "abc123", "services": ["caddy", "authelia"], "error": None,
                         "schedule": "daily"},
        "last_run": {"started": "2026-11-23T03:00:00Z", "finished": "2026-11-23T03:05:00Z", "ok": True,
                     "snapshot_id": "abc123", "services": ["caddy", "authelia"], "error": None,
                     "schedule": "daily"},
        "exposure": {"checked": [P + s for s in SERVICES], "secrets": 27, "findings": []},
        "userland_proxies": [],
    }


def expected():
    return {
        "prefix": P, "mode": "full", "services": copy.deepcopy(SERVICES), "vhosts": copy.deepcopy(VHOSTS),
        "portal_fqdn": PORTAL, "ingress": "caddy",
        "ingress_ports": [{"container_port": 80, "proto": "tcp", "host_port": 8080},
                          {"container_port": 443, "proto": "tcp", "host_port": 8443},
                          {"container_port": 443, "proto": "udp", "host_port": 8443}],
        "bind_address": "127.0.0.1", "allowed_host_ports": [22], "base_dir": "/b",
        "kfuncdb_max_capabilities": ["host.shell.read", "host.docker.inspect"],
        "image_pins": {s: f"example/{s}:1.0" for s in SERVICES},
    }


def by_id(report):
    return {check["id"]: check for check in report["checks"]}


def failed(report, check_id):
    check = by_id(report)[check_id]
    assert check["status"] == "fail", check
    return " ".join(check["failures"])


def test_a_fresh_deployment_passes_every_check():
    report = audit_report(fresh_evidence(), expected())
    assert report["failed"] == [], [c for c in report["checks"] if c["status"] != "pass"]
    assert report["status"] == "pass"
    assert [c["id"] for c in report["checks"]] == list(audit.CHECK_TITLES)
    assert all(c["evidence"] for c in report["checks"])


def test_the_markdown_names_every_check_and_its_evidence():
    evidence = fresh_evidence()
    evidence["base_files"][0]["mode"] = "0644"
    text = audit_markdown(audit_report(evidence, expected()))
    assert text.startswith("# Security audit: FAIL")
    for check_id, title in audit.CHECK_TITLES.items():
        assert f"`{check_id}`" in text and title in text
    assert "- FAIL: /b/litellm/litellm.env: 0644 root" in text


def test_a_port_published_by_a_stack_container_fails_ports():
    evidence = fresh_evidence()
    evidence["containers"].append(container("redis", ports={"6379/tcp": [{"HostIp": "0.0.0.0", "HostPort": "6379"}]}))
    text = failed(audit_report(evidence, expected()), "ports")
    assert "t-redis publishes 0.0.0.0:6379->6379/tcp" in text


def test_the_ingress_on_the_wrong_address_or_port_fails_ports():
    evidence = fresh_evidence()
    evidence["containers"][0]["NetworkSettings"]["Ports"]["443/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": "8443"}]
    evidence["containers"][0]["NetworkSettings"]["Ports"]["2019/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": "2019"}]
    text = failed(audit_report(evidence, expected()), "ports")
    assert "expected on 127.0.0.1 only" in text and "127.0.0.1:2019->2019/tcp" in text


def test_foreign_listeners_warn_and_fail_only_when_asked():
    evidence = fresh_evidence()
    evidence["proc_net"]["tcp6"] = ("  sl  local_address\n"
                                    "   0: 00000000000000000000000000000000:0CEA 00000000000000000000000000000000:0000 0A\n")
    evidence["other_containers"] = [{"Name": "other", "State": {"Running": True},
                                     "NetworkSettings": {"Ports": {"5432/tcp": [{"HostIp": "", "HostPort": "5432"}]}}}]
    check = by_id(audit_report(evidence, expected()))["ports"]
    assert check["status"] == "warn"
    assert any(":::3306/tcp" in w for w in check["warnings"])
    assert any("other (not this stack's) publishes *:5432" in w for w in check["warnings"])
    strict = dict(expected(), host_ports_fail=True)
    assert "3306" in failed(audit_report(evidence, strict), "ports")


def test_proc_net_parsing():
    tcp6 = ("  sl  local_address\n"
            "   0: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A\n"
            "   1: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A\n")
    assert audit.parse_proc_net(tcp6, "tcp6") == [{"proto": "tcp", "address": "127.0.0.1", "port": 80},
                                                  {"proto": "tcp", "address": "::1", "port": 443}]
    udp = "  sl  local_address\n   0: 00000000:01BB 00000000:0000 07\n"
    assert audit.parse_proc_net(udp, "udp") == [{"proto": "udp", "address": "0.0.0.0", "port": 443}]


def test_a_0644_env_file_fails_secrets():
    evidence = fresh_evidence()
    evidence["base_files"][0]["mode"] = "0644"
    assert "/b/litellm/litellm.env: 0644 root (.env files must be 0600: no group or other access)" in failed(
        audit_report(evidence, expected()), "secrets")


@pytest.mark.parametrize("change, culprit", [
    (lambda e: e["store_stat"].update(mode="0755"), "/s: directory 0755 root (expected 0700 root)"),
    (lambda e: e["store_files"][0].update(mode="0640"), "/s/redis_password: 0640 root"),
    (lambda e: e["store_files"][0].update(uid=1000, pw_name="alice"), "/s/redis_password: 0600 alice"),
    (lambda e: e["base_files"][1].update(mode="0444"), "/b/redis/secrets/redis_password: 0444"),
    (lambda e: e["store_stat"].update(exists=False), "/s: missing"),
])
def test_secret_files_modes_and_owner(change, culprit):
    evidence = fresh_evidence()
    change(evidence)
    assert culprit in failed(audit_report(evidence, expected()), "secrets")


def test_old_secrets_warn_and_fail_only_when_configured():
    evidence = fresh_evidence()
    evidence["store_files"][0]["mtime"] = EPOCH - 400 * 86400
    check = by_id(audit_report(evidence, expected()))["secrets"]
    assert check["status"] == "warn" and "400 days ago" in check["warnings"][0]
    assert "400 days ago" in failed(audit_report(evidence, dict(expected(), secret_age_fails=True)), "secrets")


@pytest.mark.parametrize("probe, culprit", [
    ({"fqdn": "open-webui.example.test", "status": 200}, "answers without a session"),
    ({"fqdn": "open-webui.example.test", "status": 302, "location": "https://evil.example/"},
     "answers without a session"),
    ({"fqdn": "lam.example.test", "status": None, "error": "refused"}, "no answer"),
    ({"fqdn": "api.litellm.example.test", "status": 302, "location": "https://auth.example.test/?rd=x"},
     "redirects to SSO"),
    ({"fqdn": "api.litellm.example.test", "status": 200}, "answers without an API key"),
])
def test_vhosts_answering_the_wrong_way_fail_sso(probe, culprit):
    evidence = fresh_evidence()
    evidence["probes"] = [p for p in evidence["probes"] if p["fqdn"] != probe["fqdn"]] + [probe]
    text = failed(audit_report(evidence, expected()), "sso")
    assert probe["fqdn"] in text and culprit in text


def test_a_public_vhost_needs_a_reason_and_every_vhost_is_probed():
    exp = expected()
    exp["vhosts"][0]["public_reason"] = ""
    exp["vhosts"].append({"service": "x", "fqdn": "x.example.test", "policy": "sso"})
    text = failed(audit_report(fresh_evidence(), exp), "sso")
    assert "auth.example.test/ (public): 200: public without a public_reason" in text
    assert "x.example.test (sso): not probed" in text


def test_backup_without_the_service_fails_naming_it():
    exp = expected()
    del exp["services"]["backup"]
    text = failed(audit_report(fresh_evidence(), exp), "backup")
    assert "no 'backup' service" in text and "authelia, caddy" in text


def test_backup_ages():
    evidence = fresh_evidence()
    evidence["last_success"]["finished"] = "2026-11-21T12:00:00Z"
    assert "48.0 h ago, limit 26 h): too old" in failed(audit_report(evidence, expected()), "backup")
    # No run yet: fine while the container is younger than the limit, then a failure.
    evidence["last_success"] = evidence["last_run"] = None
    check = by_id(audit_report(evidence, expected()))["backup"]
    assert check["status"] == "pass" and any("no snapshot yet, container up since" in e for e in check["evidence"])
    evidence["containers"][-1]["State"]["StartedAt"] = "2026-11-20T12:00:00.5Z"
    assert "no successful snapshot within 26 h" in failed(audit_report(evidence, expected()), "backup")
    evidence["containers"][-1]["State"]["Running"] = False
    assert "t-backup is not running" in failed(audit_report(evidence, expected()), "backup")


def test_a_snapshot_missing_a_service_warns():
    evidence = fresh_evidence()
    evidence["last_success"]["services"] = ["caddy"]
    check = by_id(audit_report(evidence, expected()))["backup"]
    assert check["status"] == "warn" and "does not include authelia" in check["warnings"][0]


def test_widened_kfuncdb_capabilities_fail():
    evidence = fresh_evidence()
    evidence["containers"][3]["Config"]["Env"][0] = "KFUNCDB_ALLOW_CAPS=host.shell.read,host.docker.inspect,host.ssh.exec"
    assert "widened beyond the audited maximum: host.ssh.exec" in failed(audit_report(evidence, expected()), "kfuncdb")
    narrowed = fresh_evidence()
    narrowed["containers"][3]["Config"]["Env"][0] = "KFUNCDB_ALLOW_CAPS="
    assert by_id(audit_report(narrowed, expected()))["kfuncdb"]["status"] == "pass"


def test_kfuncdb_outside_its_mode():
    exp = expected()
    del exp["services"]["kfuncdb"]
    assert "runs although the registry leaves" in failed(audit_report(fresh_evidence(), exp), "kfuncdb")
    evidence = fresh_evidence()
    del evidence["containers"][3]
    assert by_id(audit_report(evidence, exp))["kfuncdb"]["status"] == "pass"


def test_images_against_pins_and_moved_tags():
    evidence = fresh_evidence()
    exp = expected()
    exp["image_pins"]["authelia"] = "docker.io/example/authelia:1.1"
    evidence["image_ids"]["example/lam:1.0"] = "sha256:bbb"
    text = failed(audit_report(evidence, exp), "images")
    assert "t-authelia runs example/authelia:1.0, the inventory pins docker.io/example/authelia:1.1" in text
    assert "t-lam runs sha256:aaa" in text and "now sha256:bbb" in text


def test_built_images_match_by_repository_and_rollbacks_warn():
    evidence = fresh_evidence()
    exp = expected()
    exp["image_pins"]["kfuncdb"] = "example/kfuncdb"
    evidence["containers"][3]["Config"]["Image"] = "example/kfuncdb:0123abcd"
    evidence["image_ids"]["example/kfuncdb:0123abcd"] = "sha256:aaa"
    exp["rollback_pins"] = {"authelia": "sha256:aaa"}
    check = by_id(audit_report(evidence, exp))["images"]
    assert check["status"] == "warn" and "rolled back on purpose" in check["warnings"][0]


def test_split_image():
    assert audit.split_image("docker.io/library/caddy:2.11.7-alpine") == ("caddy", "2.11.7-alpine")
    assert audit.split_image("localhost:5000/x/y") == ("localhost:5000/x/y", "")
    assert audit.split_image("ghcr.io/a/b@sha256:1") == ("ghcr.io/a/b", "@sha256:1")


@pytest.mark.parametrize("change, culprit", [
    (lambda c: c[4]["Mounts"][0].update(RW=True), "must be read-only"),
    (lambda c: c[1]["Mounts"].append({"Source": "/run/docker.sock", "Destination": "/d.sock", "RW": False}),
     "does not declare docker_socket with a reason for 'authelia'"),
])
def test_docker_socket_mounts(change, culprit):
    evidence = fresh_evidence()
    change(evidence["containers"])
    assert culprit in failed(audit_report(evidence, expected()), "docker_socket")


@pytest.mark.parametrize("change, culprit", [
    (lambda c: c[1]["Config"].update(User="root"), "runs as root (user 'root')"),
    (lambda c: c[1]["Config"].update(User=""), "runs as root (user 'image default')"),
    (lambda c: c[1]["HostConfig"].update(CapAdd=["SYS_ADMIN"]), "adds capabilities SYS_ADMIN"),
    (lambda c: c[2]["HostConfig"].update(CapAdd=["SETUID", "NET_RAW"]), "adds capabilities NET_RAW"),
    (lambda c: c[1]["HostConfig"].update(Privileged=True), "runs privileged"),
    (lambda c: c[1]["HostConfig"].update(CapDrop=[]), "does not drop all capabilities"),
    (lambda c: c[1]["HostConfig"].update(SecurityOpt=None), "without no-new-privileges"),
])
def test_privileges(change, culprit):
    evidence = fresh_evidence()
    change(evidence["containers"])
    assert culprit in failed(audit_report(evidence, expected()), "privileges")


def test_a_declaration_without_its_reason_is_no_declaration():
    exp = expected()
    exp["services"]["lam"]["run_as_root_reason"] = " "
    assert "t-lam" in failed(audit_report(fresh_evidence(), exp), "privileges")


def test_select_containers():
    host = [
        {"Names": ["/t-caddy"], "Labels": {}, "State": "running", "Ports": []},
        {"Names": ["/t-intruder"], "Labels": {}, "State": "running", "Ports": []},
        {"Names": ["/other"], "Labels": {}, "State": "running",
         "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8000, "Type": "tcp"}]},
        {"Names": ["/quiet"], "Labels": {}, "State": "exited", "Ports": []},
    ]
    selected = audit.select_containers(host, "t-", ["caddy"])
    assert selected["stack"] == ["t-caddy", "t-intruder"]
    assert selected["other"][0]["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8000"}]}
    unprefixed = audit.select_containers(host + [{"Names": ["/x"], "Labels": {"datamancy.stack.service": "x"}}], "",
                                         ["caddy"])
    assert unprefixed["stack"] == ["x"]


def test_image_ids_normalize_references():
    ids = audit.image_ids([{"Id": "sha256:1", "RepoTags": ["caddy:2"], "RepoDigests": ["caddy@sha256:d"]}])
    assert ids == {"caddy:2": "sha256:1", "caddy@sha256:d": "sha256:1"}


def shipped_registry():
    """stack_services_default as the stack role's defaults render it (role variables unset), through Ansible's
    own templating: the values registry_errors sees on a deployment."""
    init_plugin_loader([str(REPO / "collections")])
    loader = DataLoader()
    variables = {}
    for defaults in sorted((REPO / "roles/stack/defaults/main").glob("*.yml")):
        variables.update(loader.load_from_file(str(defaults), trusted_as_template=True) or {})
    return Templar(loader=loader, variables=variables).template(variables["stack_services_default"])


def test_the_registry_declares_every_relaxation_the_roles_use_and_the_kfuncdb_default_matches():
    registry = shipped_registry()
    assert registry_errors(registry) == []
    assert registry["caddy"]["cap_add"] == ["NET_BIND_SERVICE"] and registry["docker-proxy"]["docker_socket"]
    kfuncdb = yaml.safe_load((REPO / "roles/kfuncdb/defaults/main.yml").read_text())
    audit_defaults = yaml.safe_load((REPO / "roles/audit/defaults/main.yml").read_text())
    assert audit_defaults["audit_kfuncdb_max_capabilities"] == kfuncdb["kfuncdb_allow_caps"].split(",")


def test_registry_relaxations_need_reasons():
    services = {"caddy": {"networks": ["frontend"], "cap_add": ["NET_BIND_SERVICE"]},
                "x": {"run_as_root": True, "docker_socket": "yes", "no_new_privileges": False}}
    errors = registry_errors(services)
    assert "service 'caddy': cap_add needs a cap_add_reason saying why" in errors
    assert "service 'x': run_as_root: true needs a run_as_root_reason saying why" in errors
    assert "service 'x': docker_socket: true needs a docker_socket_reason saying why" in errors
    assert "service 'x': no_new_privileges: false needs a no_new_privileges_reason saying why" in errors
    services["x"]["cap_add"] = "ALL"
    assert registry_errors(services) == [
        "service 'x': cap_add must be a list of capability names (got 'ALL')"]


def test_a_secret_in_a_container_configuration_fails_naming_container_and_secret():
    evidence = fresh_evidence()
    evidence["exposure"]["findings"] = [
        {"container": P + "litellm", "field": "Config.Env LITELLM_MASTER_KEY", "secret": "litellm_master_key"}]
    report = audit_report(evidence, expected())
    assert report["failed"] == ["secret_exposure"]
    assert failed(report, "secret_exposure") == (
        f"{P}litellm holds the secret litellm_master_key in Config.Env LITELLM_MASTER_KEY")


def test_missing_exposure_evidence_fails():
    evidence = fresh_evidence()
    del evidence["exposure"]
    assert "no container was searched" in failed(audit_report(evidence, expected()), "secret_exposure")


# --- machine APIs and Docker's userland proxy ------------------------------------------------------------------

USERLAND_PROXY = ("4242 /usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 8443 -container-ip 172.18.0.5 "
                  "-container-port 443")
ELSEWHERE = "4343 /usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 5432 -container-ip 172.18.0.9"


def test_api_clients_pass_when_the_engine_nats_the_ingress_ports():
    check = by_id(audit_report(fresh_evidence(), expected()))["api_clients"]
    assert check["status"] == "pass", check
    assert check["evidence"][0].startswith("no docker-proxy process relays Caddy's ports (0 on the host)")
    assert "api.litellm.example.test: allowlist 10.0.0.0/8" in check["evidence"]
    # Another container's published port relayed by the proxy is the ports check's business, not this one's.
    evidence = fresh_evidence()
    evidence["userland_proxies"] = [ELSEWHERE]
    assert by_id(audit_report(evidence, expected()))["api_clients"]["status"] == "pass"


def test_the_userland_proxy_in_front_of_an_api_vhost_fails():
    """docker-proxy relays the published port from a host socket: every client it relays arrives from the bridge
    gateway, which an allowlist of private ranges would admit."""
    evidence = fresh_evidence()
    evidence["userland_proxies"] = [USERLAND_PROXY, ELSEWHERE]
    text = failed(audit_report(evidence, expected()), "api_clients")
    assert "-host-port 8443" in text and "5432" not in text
    assert "Docker's userland proxy relays Caddy's ports" in text and "api.litellm.example.test" in text
    # Without an API vhost nothing trusts a client address: the same engine passes.
    plain = expected()
    plain["vhosts"] = [v for v in plain["vhosts"] if v["policy"] != "api"]
    check = by_id(audit_report(evidence, plain))["api_clients"]
    assert check["status"] == "pass" and "no machine-API vhost" in check["evidence"][0]


def test_unlisted_processes_leave_the_question_open():
    evidence = fresh_evidence()
    evidence["userland_proxies"] = None
    check = by_id(audit_report(evidence, expected()))["api_clients"]
    assert check["status"] == "warn" and "could not be listed" in check["warnings"][0]


def test_an_allowlist_beyond_the_private_ranges_is_reported_with_its_reason():
    wide = expected()
    api = next(v for v in wide["vhosts"] if v["policy"] == "api")
    api.update(allowlist=["10.0.0.0/8", "203.0.113.0/24"], allowlist_wide=["203.0.113.0/24"],
               allowlist_reason="the partner office")
    check = by_id(audit_report(fresh_evidence(), wide))["api_clients"]
    assert check["status"] == "pass"
    assert ("api.litellm.example.test: admits 203.0.113.0/24 beyond the private and local ranges, by intent "
            "(the partner office)") in check["evidence"]
    api["allowlist_reason"] = ""
    assert "without an allowlist_reason" in failed(audit_report(fresh_evidence(), wide), "api_clients")
