from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.operations import (
    registry_order,
    registry_role,
    registry_secret_consumers,
    update_summary_line,
)
from ansible_collections.datamancy.stack.plugins.filter.registry import registry_active

REGISTRY_FILE = Path(__file__).resolve().parents[4] / "roles/stack/defaults/main/registry.yml"


def shipped_registry() -> dict:
    return yaml.safe_load(REGISTRY_FILE.read_text())["stack_services_default"]


def test_dependencies_come_first_in_the_shipped_registry():
    services = registry_active(shipped_registry(), "full")
    order = registry_order(services)
    assert sorted(order) == sorted(services)
    for name, entry in services.items():
        for dependency in entry.get("depends_on", []):
            assert order.index(dependency) < order.index(name), (dependency, name)
    assert order.index("redis") < order.index("authelia") < order.index("caddy") < order.index("open-webui")


def test_bootstrap_mode_ignores_dependencies_on_inactive_services():
    services = {"a": {"depends_on": ["b", "gone"]}, "c": {}}
    assert registry_order(services) == ["a", "c"]


def test_only_keeps_dependency_order_and_refuses_unknown_names():
    services = {"web": {"depends_on": ["db"]}, "db": {}, "cache": {}}
    assert registry_order(services, ["web", "db"]) == ["db", "web"]
    with pytest.raises(AnsibleFilterError, match="nope"):
        registry_order(services, ["nope"])


def test_a_cycle_is_an_error():
    with pytest.raises(AnsibleFilterError, match="cycle: a -> b -> a"):
        registry_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}})


def test_roles_follow_the_name_unless_the_entry_names_one():
    services = shipped_registry()
    assert registry_role(services, "open-webui") == "open_webui"
    assert registry_role(services, "docker-proxy") == "docker_socket_proxy"
    with pytest.raises(AnsibleFilterError):
        registry_role(services, "nope")


def test_secret_consumers_include_those_of_a_digests_source():
    services = registry_active(shipped_registry(), "full")
    catalogue = {"authelia_ldap_password_hash": {"kind": "digest", "derive_from": "authelia_ldap_password"}}
    assert registry_secret_consumers(services, ["authelia_session_secret"]) == ["authelia"]
    assert registry_secret_consumers(services, ["authelia_ldap_password_hash"], catalogue) == ["openldap", "authelia"]
    assert registry_secret_consumers(services, ["localai_api_key"]) == ["localai", "litellm"]


def test_an_upstream_key_restarts_its_service_and_the_ingress_that_sends_it():
    services = registry_active(shipped_registry(), "full")
    consumers = registry_secret_consumers(services, ["kfuncdb_api_key"])
    assert set(consumers) == {"caddy", "kfuncdb"}
    assert registry_secret_consumers(services, ["docker_proxy_api_key"]) == ["docker-proxy", "kfuncdb"]


def test_oidc_secrets_restart_the_provider_and_the_client_that_sends_them():
    services = registry_active(shipped_registry(), "full")
    assert registry_secret_consumers(services, ["authelia_oidc_issuer_key"]) == ["authelia"]
    assert registry_secret_consumers(services, ["authelia_oidc_hmac_secret"]) == ["authelia"]
    # Open WebUI sends the client secret, Authelia checks it against its digest.
    assert set(registry_secret_consumers(services, ["oidc_open_webui_client_secret"])) == {"authelia", "open-webui"}
    assert registry_secret_consumers(services, ["oidc_open_webui_client_secret_digest"]) == ["authelia"]
    # In bootstrap mode no client exists, and no provider is restarted for a client's secret.
    assert registry_secret_consumers(registry_active(shipped_registry(), "bootstrap"),
                                     ["oidc_open_webui_client_secret"]) == []


def test_lams_salt_restarts_lam():
    services = registry_active(shipped_registry(), "bootstrap")
    assert registry_secret_consumers(services, ["lam_master_password_salt"]) == ["lam"]


def test_summary_line():
    line = update_summary_line({"service": "redis", "result": "rolled_back", "old_image": "r:1",
                                "old_image_id": "sha256:" + "a" * 64, "new_image": "r:1",
                                "new_image_id": "sha256:" + "a" * 64, "attempted_image": "r:2",
                                "attempted_image_id": "sha256:" + "b" * 64, "error": "unhealthy"})
    assert line == "redis: rolled_back; r:1 (aaaaaaaaaaaa) -> r:1 (aaaaaaaaaaaa); tried r:2 (bbbbbbbbbbbb); unhealthy"
