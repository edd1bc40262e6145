from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.registry import (
    authelia_access_rules,
    registry_active,
    registry_errors,
    registry_networks,
    registry_oidc_clients,
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
        (lambda r: r["lam"].update(networks=["frontend", "dmz"]), "unknown network(s) dmz"),
        (lambda r: r["lam"].update(mode="later"), "mode must be one of"),
        (lambda r: r["litellm"]["vhosts"][1].update(allowlist="10.0.0.0/8 300.1.1.1/32"), "invalid CIDR(s)"),
        (lambda r: r["litellm"]["vhosts"][1].pop("allowlist"), "needs an allowlist"),
        (lambda r: r.pop("caddy"), "ingress service 'caddy' must be in the registry"),
        (lambda r: r["lam"].update(secret_env={"LAM_PASSWORD": "lam_other_password"}),
         "secret_env 'LAM_PASSWORD' names 'lam_other_password', which its secrets do not list"),
        (lambda r: r["lam"].update(secrets=["x_key"], secret_env={"BAD-NAME": "x_key"}),
         "secret_env variable 'BAD-NAME' is not an environment variable name"),
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
    assert any("invalid CIDR(s) in allowlist: not-a-cidr" in error for error in registry_errors(registry))
    assert "api2.litellm.example.test" in [v["fqdn"] for v in registry_vhosts(registry, "example.test")]


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("True", True), ("False", False), (False, False),
                                                 (None, False)])
def test_mtls_accepts_templated_strings(value, expected):
    registry = copy.deepcopy(REGISTRY)
    if value is not None:
        registry["litellm"]["vhosts"][1]["mtls"] = value
    vhosts = {v["fqdn"]: v for v in registry_vhosts(registry, "example.test")}
    assert vhosts["api.litellm.example.test"]["mtls"] is expected
