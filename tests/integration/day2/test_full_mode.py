"""The whole platform through site.yml: full mode converges with every service healthy behind Caddy, a second run
changes nothing, and switching full -> bootstrap -> full removes and brings back the full-mode containers while
every volume keeps its data."""
from __future__ import annotations

import json

import pytest

from stacklib import StackDeployment, clickhouse, http, qdrant

FULL_ONLY = ("localai", "litellm", "open-webui", "qdrant", "clickhouse", "kfuncdb", "docker-proxy")


@pytest.fixture(name="stack")
def stack_fixture(full_stack):
    """The day-2 package's shared full-mode deployment (conftest.py)."""
    return full_stack


def running(stack: StackDeployment) -> set[str]:
    return {c.name.removeprefix(stack.prefix) for c in stack.containers() if c.status == "running"}


def test_every_full_mode_service_runs_healthy(stack):
    names = running(stack)
    assert set(FULL_ONLY) <= names, names
    for container in stack.containers():
        health = container.attrs["State"].get("Health", {}).get("Status")
        assert health in (None, "healthy"), (container.name, health)


def test_every_ui_is_behind_sso_and_the_api_vhost_is_not(stack):
    for host in ("open-webui", "litellm", "localai", "kfuncdb", "lam"):
        api_client = {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}
        response = stack.session().get(stack.url(host), headers=api_client, allow_redirects=False)
        assert response.status_code == 401, (host, response.status_code)
    # No SSO on the machine API: LiteLLM itself answers (and wants its key).
    response = stack.session().get(stack.url("api.litellm", "/v1/models"))
    assert response.status_code == 401 and "authelia" not in response.text.lower()


def test_a_second_run_changes_nothing(stack):
    second = stack.playbook("site.yml")
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_switching_to_bootstrap_and_back_keeps_every_volume(stack):
    key = stack.read_secret("qdrant_api_key").strip()
    admin = stack.read_secret("clickhouse_admin_password").strip()
    point = {"points": [{"id": 42, "vector": [0.5] * 384, "payload": {"kept": "through the switch"}}]}
    stored, inserted = http(stack, "database",
                            qdrant("/collections/documents/points?wait=true", key, "PUT", point),
                            clickhouse("INSERT INTO datamancy.series_values VALUES ('switch', '2026-11-23 10:00:00',"
                                       " 7.5)", "admin", admin))
    assert stored["status"] == 200 and inserted["status"] == 200, (stored, inserted)
    volumes_before = {v.name for v in stack.docker.volumes.list() if v.name.startswith(stack.vars["stack_volume_prefix"])}
    secrets_before = stack.store_snapshot()

    bootstrap = stack.playbook("site.yml", stack_mode="bootstrap")
    assert bootstrap.returncode == 0, bootstrap.output[-4000:]
    names = running(stack)
    assert not set(FULL_ONLY) & names, names
    assert {"caddy", "authelia", "openldap", "redis", "lam"} <= names
    volumes_between = {v.name for v in stack.docker.volumes.list()
                       if v.name.startswith(stack.vars["stack_volume_prefix"])}
    assert volumes_before <= volumes_between
    # The full-mode vhosts are gone from Caddy: no certificate, no site.
    caddyfile = (stack.base_dir / "caddy" / "etc" / "Caddyfile").read_text()
    assert f"litellm.{stack.domain}" not in caddyfile and f"lam.{stack.domain}" in caddyfile

    back = stack.playbook("site.yml")
    assert back.returncode == 0, back.output[-4000:]
    assert set(FULL_ONLY) <= running(stack)
    assert stack.store_snapshot() == secrets_before
    kept_point, kept_row = http(stack, "database", qdrant("/collections/documents/points/42", key),
                                clickhouse("SELECT value FROM datamancy.series_values WHERE series_id = 'switch'",
                                           "admin", admin))
    assert json.loads(kept_point["body"])["result"]["payload"] == {"kept": "through the switch"}
    assert kept_row["body"].strip() == "7.5"
