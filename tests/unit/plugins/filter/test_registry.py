from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.registry import (
    authelia_access_rules,
    registry_active,
    registry_errors,
    registry_neighbours,
    registry_networks,
    registry_oidc_clients,
    registry_upstream_keys,
    registry_vhosts,
)

REGISTRY = {
    "caddy": {"mode": "bootstrap", "networks": ["frontend"]},
    "authelia": {
        "mode": "bootstrap",
        "networks": ["frontend", "backend"],
        "vhosts": [{"host": "auth", "upstream": "authelia:9091", "policy": "public", "public_reason": "portal"}],
    },
    "lam": {
        "mode": "bootstrap",
        "networks": ["frontend", "backend"],
        "vhosts": [{"host": "lam", "upstream": "lam:80", "policy": "sso_admins"}],
    },
    "open-webui": {
        "mode": "full",
        "networks": ["frontend", "backend"],
        "vhosts": [{"host": "open-webui", "upstream": "open-webui:8080"}],
    },
    "litellm": {
        "mode": "full",
        "networks": ["frontend", "backend"],
        "vhosts": [
            {"host": "litellm", "upstream": "litellm:4000"},
            {"host": "api.litellm", "upstream": "litellm:4000", "policy": "api", "allowlist": "10.0.0.0/8 ::1"},
        ],
    },
    "qdrant": {"mode": "full", "networks": ["database"]},
    "disabled": {"mode": "bootstrap", "enabled": False, "networks": ["backend"]},
}


def test_the_sample_registry_is_valid():
    assert registry_errors(REGISTRY) == []


def test_bootstrap_mode_keeps_only_enabled_core_services():
    assert sorted(registry_active(REGISTRY, "bootstrap")) == ["authelia", "caddy", "lam"]


def test_full_mode_adds_full_services_but_not_disabled_ones():
    assert sorted(registry_active(REGISTRY, "full")) == ["authelia", "caddy", "lam", "litellm", "open-webui", "qdrant"]


def test_unknown_mode_is_an_error():
    with pytest.raises(AnsibleFilterError, match="bootstrap, full"):
        registry_active(REGISTRY, "everything")


def test_a_vhost_without_policy_is_sso_protected_by_default():
    vhosts = {v["fqdn"]: v for v in registry_vhosts(REGISTRY, "example.test")}
    assert vhosts["open-webui.example.test"]["policy"] == "sso"
    assert vhosts["open-webui.example.test"]["forward_auth"] is True
    assert vhosts["auth.example.test"]["forward_auth"] is False
    assert vhosts["api.litellm.example.test"]["forward_auth"] is False
    assert vhosts["api.litellm.example.test"]["allowlist"] == ["10.0.0.0/8", "::1"]


def test_vhosts_are_sorted_and_complete():
    fqdns = [v["fqdn"] for v in registry_vhosts(REGISTRY, "example.test")]
    assert fqdns == sorted(fqdns)
    assert len(fqdns) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["lam"]["vhosts"][0].update(policy="public"), "needs a public_reason"),
        (lambda r: r["lam"]["vhosts"][0].update(policy="open"), "policy must be one of"),
        (lambda r: r["lam"]["vhosts"][0].update(upstream="lam"), "upstream must be"),
        (lambda r: r["lam"]["vhosts"][0].update(host="auth"), "already used by service 'authelia'"),
        (lambda r: r["lam"]["vhosts"][0].update(host="Bad_Host"), "host must be DNS label"),
        (lambda r: r["lam"].update(networks=["backend"]), "shares no network with 'caddy'"),
        (lambda r: r["lam"].update(networks=["frontend", "dmz"]), "networks entry 'dmz' must be one of frontend, backend, database, tools, egress"),
        (lambda r: r["lam"].update(mode="later"), "mode must be one of"),
        (lambda r: r["litellm"]["vhosts"][1].update(allowlist="10.0.0.0/8 300.1.1.1/32"), "invalid CIDR(s)"),
        (lambda r: r["litellm"]["vhosts"][1].pop("allowlist"), "needs an allowlist"),
        (lambda r: r.pop("caddy"), "ingress service 'caddy' must be in the registry"),
        (lambda r: r["lam"].update(secret_env={"LAM_PASSWORD": "lam_other_password"}),
         "secret_env 'LAM_PASSWORD' names 'lam_other_password', which its secrets do not list"),
        (lambda r: r["lam"].update(secrets=["x_key"], secret_env={"BAD-NAME": "x_key"}),
         "secret_env 'BAD-NAME' is not an environment variable name"),
        (lambda r: r["lam"].update(secret_env=["x_key"]), "secret_env must map environment variable names"),
    ],
)
def test_registry_errors_name_the_problem(change, message):
    registry = copy.deepcopy(REGISTRY)
    change(registry)
    errors = registry_errors(registry)
    assert any(message in error for error in errors), errors


def test_empty_registry_is_an_error():
    assert registry_errors({}) and registry_errors(None)


def test_access_rules_require_two_factor_for_admins_first_and_deny_the_rest():
    vhosts = registry_vhosts(registry_active(REGISTRY, "full"), "example.test")
    rules = authelia_access_rules(vhosts, "admins", ["admins", "users"], True)
    assert rules[0] == {
        "domain": ["lam.example.test", "litellm.example.test", "open-webui.example.test"],
        "subject": ["group:admins"],
        "policy": "two_factor",
    }
    # Users reach the sso vhosts with one factor, and nothing admin-only (default deny covers lam).
    assert rules[1] == {
        "domain": ["litellm.example.test", "open-webui.example.test"],
        "subject": ["group:users"],
        "policy": "one_factor",
    }
    assert len(rules) == 2
    every_domain = {d for rule in rules for d in rule["domain"]}
    assert "auth.example.test" not in every_domain and "api.litellm.example.test" not in every_domain


def test_access_rules_with_one_factor_admins():
    vhosts = registry_vhosts(registry_active(REGISTRY, "bootstrap"), "example.test")
    rules = authelia_access_rules(vhosts, "admins", ["admins", "users"], False)
    assert rules == [{"domain": ["lam.example.test"], "subject": ["group:admins"], "policy": "one_factor"}]


def test_networks_carry_the_prefix_and_the_service_alias():
    assert registry_networks(REGISTRY, "lam", "t-") == [
        {"name": "t-frontend", "aliases": ["lam"]},
        {"name": "t-backend", "aliases": ["lam"]},
    ]


def test_the_ingress_answers_to_every_vhost_fqdn_inside_its_networks():
    vhosts = registry_vhosts(registry_active(REGISTRY, "full"), "example.test")
    fqdns = ["api.litellm.example.test", "auth.example.test", "lam.example.test", "litellm.example.test",
             "open-webui.example.test"]
    assert registry_networks(REGISTRY, "caddy", "t-", vhosts) == [{"name": "t-frontend", "aliases": ["caddy", *fqdns]}]
    # Only the ingress gets them: any other service answering to a vhost name would hijack it.
    assert registry_networks(REGISTRY, "lam", "t-", vhosts)[0]["aliases"] == ["lam"]


def test_networks_of_an_unknown_service_is_an_error():
    with pytest.raises(AnsibleFilterError, match="'nope' is not in the registry"):
        registry_networks(REGISTRY, "nope")


def test_oidc_clients_get_absolute_redirects_and_derived_secret_names():
    registry = copy.deepcopy(REGISTRY)
    registry["open-webui"]["oidc"] = {"client_id": "open-webui", "redirect_path": "/oauth/oidc/callback"}
    (client,) = registry_oidc_clients(registry, "example.test")
    assert client["redirect_uris"] == ["https://open-webui.example.test/oauth/oidc/callback"]
    assert client["secret_name"] == "oidc_open_webui_client_secret"
    assert client["digest_name"] == "oidc_open_webui_client_secret_digest"
    assert client["scopes"] == ["openid", "profile", "email", "groups"]


def test_the_groups_granting_an_apps_admin_role_sign_in_with_two_factors():
    registry = copy.deepcopy(REGISTRY)
    registry["open-webui"]["oidc"] = {"client_id": "open-webui", "redirect_path": "/cb",
                                      "two_factor_groups": ["openwebui-admin"]}
    (client,) = registry_oidc_clients(registry, "example.test", ["admins"])
    assert client["authorization_policy"] == client["policy_name"] == "open_webui_policy"
    assert client["policy"] == {"default_policy": "one_factor", "rules": [
        {"policy": "two_factor", "subject": ["group:admins", "group:openwebui-admin"]}]}
    assert client["two_factor_groups"] == ["admins", "openwebui-admin"]
    # A client that asks two factors of everyone needs no policy of its own.
    registry["open-webui"]["oidc"]["authorization_policy"] = "two_factor"
    (client,) = registry_oidc_clients(registry, "example.test", ["admins"])
    assert client["authorization_policy"] == "two_factor" and client["policy_name"] == "" and client["policy"] == {}
    # Without groups to elevate, one factor stays the plain built-in policy.
    del registry["open-webui"]["oidc"]["authorization_policy"], registry["open-webui"]["oidc"]["two_factor_groups"]
    (client,) = registry_oidc_clients(registry, "example.test")
    assert client["authorization_policy"] == "one_factor" and client["policy_name"] == ""


def test_two_factor_groups_are_group_names():
    registry = copy.deepcopy(REGISTRY)
    registry["open-webui"]["oidc"] = {"redirect_path": "/cb", "two_factor_groups": ["Admins\n"]}
    assert registry_errors(registry) == [
        "service 'open-webui' oidc: two_factor_groups entry 'Admins\\n' must be an LDAP group name"]


def test_oidc_client_without_redirect_is_an_error():
    registry = copy.deepcopy(REGISTRY)
    registry["open-webui"]["oidc"] = {"client_id": "open-webui"}
    with pytest.raises(AnsibleFilterError, match="needs redirect_path"):
        registry_oidc_clients(registry, "example.test")


@pytest.mark.parametrize("switch", [False, "False", "false", "no", "0", ""])
def test_a_switched_off_vhost_is_left_out_and_not_validated(switch):
    registry = copy.deepcopy(REGISTRY)
    # As a role variable renders it: an optional machine-API vhost, off, with a value that would not validate.
    registry["litellm"]["vhosts"].append({"host": "api2.litellm", "upstream": "litellm:4000", "policy": "api",
                                          "allowlist": "not-a-cidr", "enabled": switch})
    assert registry_errors(registry) == []
    assert "api2.litellm.example.test" not in [v["fqdn"] for v in registry_vhosts(registry, "example.test")]


@pytest.mark.parametrize("switch", [True, "True", "yes", None])
def test_a_switched_on_vhost_is_rendered_and_validated(switch):
    registry = copy.deepcopy(REGISTRY)
    vhost = {"host": "api2.litellm", "upstream": "litellm:4000", "policy": "api", "allowlist": "not-a-cidr"}
    if switch is not None:
        vhost["enabled"] = switch
    registry["litellm"]["vhosts"].append(vhost)
    assert registry_errors(registry) == ["service 'litellm' vhost 'api2.litellm': allowlist must be CIDRs, "
                                         "space-separated or a list (got 'not-a-cidr')"]
    assert "api2.litellm.example.test" in [v["fqdn"] for v in registry_vhosts(registry, "example.test")]


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("True", True), ("False", False), (False, False),
                                                 (None, False)])
def test_mtls_accepts_templated_strings(value, expected):
    registry = copy.deepcopy(REGISTRY)
    if value is not None:
        registry["litellm"]["vhosts"][1]["mtls"] = value
    vhosts = {v["fqdn"]: v for v in registry_vhosts(registry, "example.test")}
    assert vhosts["api.litellm.example.test"]["mtls"] is expected


# --- the schema: unknown keys, wrong types, control characters --------------------------------------------------

@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r["qdrant"].update(volumes=[{"name": "storage", "path": "/qdrant", "backups": True}]),
         "service 'qdrant' volume 'storage': unknown key 'backups' (did you mean 'backup'?)"),
        (lambda r: r["lam"].update(dependson=["openldap"]),
         "service 'lam': unknown key 'dependson' (did you mean 'depends_on'?)"),
        (lambda r: r["lam"]["vhosts"][0].update(polcy="sso"),
         "service 'lam' vhost 'lam': unknown key 'polcy' (did you mean 'policy'?)"),
        (lambda r: r["open-webui"].update(oidc={"client_id": "owui", "redirect_path": "/cb", "secret": "x"}),
         "service 'open-webui' oidc: unknown key 'secret' (known: authorization_policy, client_id, client_name, "
         "host, redirect_path, scopes, two_factor_groups)"),
        (lambda r: r["lam"].update(enabled="ture"), "service 'lam': enabled must be true or false (got 'ture')"),
        (lambda r: r["lam"].update(networks="frontend"),
         "service 'lam': networks must be a list of networks (got 'frontend')"),
        (lambda r: r["lam"].update(secrets=["lam_password\n"]),
         "service 'lam': secrets entry 'lam_password\\n' must be a secret name (letters, digits, '_' and '-')"),
        (lambda r: r["qdrant"].update(volumes=[{"path": "/qdrant"}]), "service 'qdrant' volume #1: needs name"),
        (lambda r: r["qdrant"].update(volumes=[{"name": "s", "consistency": "rsync"}]),
         "service 'qdrant' volume 's': consistency must be one of none, sqlite, ldif, clickhouse, qdrant "
         "(got 'rsync')"),
    ],
)
def test_the_schema_refuses_naming_service_key_and_value(change, error):
    registry = copy.deepcopy(REGISTRY)
    change(registry)
    assert registry_errors(registry) == [error]


def test_a_newline_in_a_reason_is_refused_before_it_can_reach_the_caddyfile():
    # The attack: the reason closes the comment line and opens a site of its own without forward_auth.
    registry = copy.deepcopy(REGISTRY)
    registry["authelia"]["vhosts"][0]["public_reason"] = "portal\n}\nevil.example.test {\n\treverse_proxy lam:80\n"
    assert registry_errors(registry) == [
        "service 'authelia' vhost 'auth': public_reason must be one line of text without control characters "
        "(got 'portal\\n}\\nevil.example.test {\\n\\treverse_proxy lam:80\\n')"]


@pytest.mark.parametrize(("where", "value"), [
    ("host", "lam\n"), ("upstream", "lam:80\n"), ("audit_path", "/\nx"), ("audit_path", "/ x"),
])
def test_a_trailing_newline_never_passes_a_pattern(where, value):
    registry = copy.deepcopy(REGISTRY)
    registry["lam"]["vhosts"][0][where] = value
    errors = registry_errors(registry)
    assert len(errors) == 1 and errors[0].startswith("service 'lam' vhost ") and f"{where} must be" in errors[0]


@pytest.mark.parametrize("name", ["whoami\n", "Who", "-x", "a_b", "", 7])
def test_a_service_name_is_a_dns_alias(name):
    registry = copy.deepcopy(REGISTRY)
    registry[name] = {"mode": "full", "networks": ["backend"]}
    errors = registry_errors(registry)
    assert errors == [f"service {name!r}: a service name is lower-case letters, digits and inner '-' (it is the "
                      "container's DNS alias)"]


def test_control_characters_in_free_text_are_refused():
    registry = copy.deepcopy(REGISTRY)
    registry["lam"].update(run_as_root=True, run_as_root_reason="Apache\x1b[2J")
    assert registry_errors(registry) == [
        "service 'lam': run_as_root_reason must be one line of text without control characters "
        "(got 'Apache\\x1b[2J')"]


def test_a_switched_off_vhost_still_has_its_keys_checked():
    registry = copy.deepcopy(REGISTRY)
    registry["litellm"]["vhosts"].append({"host": "api2.litellm", "upstream": "litellm:4000", "enabled": False,
                                          "allow_list": "10.0.0.0/8"})
    assert registry_errors(registry) == [
        "service 'litellm' vhost 'api2.litellm': unknown key 'allow_list' (did you mean 'allowlist'?)"]


def test_depends_on_names_other_services_of_the_registry():
    registry = copy.deepcopy(REGISTRY)
    registry["open-webui"]["depends_on"] = ["litellm", "postgres", "open-webui"]
    assert registry_errors(registry) == [
        "service 'open-webui': depends_on names 'postgres', which is not another service of the registry",
        "service 'open-webui': depends_on names 'open-webui', which is not another service of the registry"]


@pytest.mark.parametrize(("allowlist", "wide"), [
    ("10.0.0.0/8 192.168.7.0/24 127.0.0.1/32 fd00::/8", []),
    ("10.0.0.0/8 172.16.0.0/12", ["172.16.0.0/12"]),        # Docker's own bridges
    ("172.18.0.1/32", ["172.18.0.1/32"]),                    # one bridge gateway
    ("0.0.0.0/0", ["0.0.0.0/0"]),
    ("10.0.0.0/7", ["10.0.0.0/7"]),                          # wider than the private range it contains
    ("203.0.113.0/24 2001:db8::/32", ["203.0.113.0/24", "2001:db8::/32"]),
])
def test_an_allowlist_beyond_the_private_ranges_needs_a_reason(allowlist, wide):
    registry = copy.deepcopy(REGISTRY)
    registry["litellm"]["vhosts"][1]["allowlist"] = allowlist
    errors = registry_errors(registry)
    if not wide:
        assert errors == []
        return
    assert errors == [
        f"service 'litellm' vhost 'api.litellm': the allowlist admits addresses outside the private and local "
        f"ranges ({', '.join(wide)}; 172.16.0.0/12 holds Docker's own bridges): narrow it, or say why in "
        "allowlist_reason (stack_api_allowlist_reason), which the audit reports"]
    registry["litellm"]["vhosts"][1]["allowlist_reason"] = "the partner office's addresses"
    assert registry_errors(registry) == []
    api = next(v for v in registry_vhosts(registry, "example.test") if v["host"] == "api.litellm")
    assert api["allowlist_wide"] == wide and api["allowlist_reason"] == "the partner office's addresses"
    # A reason is one line: it could never add a line to anything generated from the registry.
    registry["litellm"]["vhosts"][1]["allowlist_reason"] = "ok\nmore"
    assert any("allowlist_reason" in error for error in registry_errors(registry))


def test_an_allowlist_belongs_to_api_vhosts_only():
    # It would be read as protection, yet only policy api applies it.
    registry = copy.deepcopy(REGISTRY)
    registry["lam"]["vhosts"][0]["allowlist"] = "10.0.0.0/8"
    assert registry_errors(registry) == [
        "service 'lam' vhost 'lam': allowlist applies to policy 'api' only (this vhost's policy is 'sso_admins')"]
    registry = copy.deepcopy(REGISTRY)
    registry["lam"]["vhosts"][0]["allowlist_reason"] = "why not"
    assert registry_errors(registry) == [
        "service 'lam' vhost 'lam': allowlist_reason applies to policy 'api' only (this vhost's policy is "
        "'sso_admins')"]


SERVICE_FLAG_READINGS = [(False, False), ("False", False), ("no", False), ("", False), (True, True), ("yes", True),
                         (1, True)]


@pytest.mark.parametrize(("enabled", "active"), SERVICE_FLAG_READINGS)
def test_a_service_flag_reads_like_a_vhost_flag(enabled, active):
    registry = copy.deepcopy(REGISTRY)
    registry["qdrant"]["enabled"] = enabled
    assert registry_errors(registry) == []
    assert ("qdrant" in registry_active(registry, "full")) is active


def test_an_upstream_key_reaches_the_ingress_as_an_environment_variable_name_only():
    registry = copy.deepcopy(REGISTRY)
    registry["lam"]["secrets"] = ["lam-key"]
    registry["lam"]["vhosts"][0]["upstream_key"] = "lam-key"
    assert registry_errors(registry) == []
    vhosts = {v["host"]: v for v in registry_vhosts(registry, "example.test")}
    assert vhosts["lam"]["upstream_key"] == "lam-key"
    assert vhosts["lam"]["upstream_key_env"] == "DATAMANCY_UPSTREAM_KEY_LAM_KEY"
    assert vhosts["open-webui"]["upstream_key"] == "" and vhosts["open-webui"]["upstream_key_env"] == ""
    assert registry_upstream_keys(list(vhosts.values())) == {"DATAMANCY_UPSTREAM_KEY_LAM_KEY": "lam-key"}


@pytest.mark.parametrize(("service", "index", "policy", "error"), [
    ("litellm", 1, "api", "upstream_key needs a signed-in policy (sso or sso_admins), not 'api'"),
    ("authelia", 0, "public", "upstream_key needs a signed-in policy (sso or sso_admins), not 'public'"),
])
def test_an_upstream_key_only_goes_to_signed_in_users(service, index, policy, error):
    registry = copy.deepcopy(REGISTRY)
    registry[service]["secrets"] = ["k"]
    registry[service]["vhosts"][index]["upstream_key"] = "k"
    host = registry[service]["vhosts"][index]["host"]
    assert registry_errors(registry) == [f"service '{service}' vhost '{host}': {error}"]


def test_an_upstream_key_is_one_of_the_services_secrets():
    registry = copy.deepcopy(REGISTRY)
    registry["lam"]["vhosts"][0]["upstream_key"] = "lam-key"
    assert registry_errors(registry) == [
        "service 'lam' vhost 'lam': upstream_key 'lam-key' must be one of the service's secrets (so a rotation "
        "restarts it)"]
    registry["lam"]["vhosts"][0]["upstream_key"] = "lam key\n"
    assert registry_errors(registry)[0].startswith("service 'lam' vhost 'lam': upstream_key must be a secret name")


def test_neighbours_are_who_reaches_a_service_without_the_ingress():
    active = registry_active(REGISTRY, "full")
    assert registry_neighbours(active, "open-webui") == ["authelia", "lam", "litellm"]
    assert registry_neighbours(active, "qdrant") == []
    alone = copy.deepcopy(active)
    alone["open-webui"]["networks"] = ["frontend"]
    for name in ("authelia", "lam", "litellm"):
        alone[name]["networks"] = ["backend"]
    assert registry_neighbours(alone, "open-webui") == []
