"""The whole platform through site.yml: full mode converges with every service healthy behind Caddy and a second run
changes nothing. Switching modes (containers removed and back, every volume's data kept, every vhost served) is
test_modes.py's."""
from __future__ import annotations

import pytest

from stacklib import StackDeployment

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


def test_only_frontend_and_egress_route_off_the_host_and_egress_is_the_backups_alone(stack):
    """Every full-mode service but the backup has its route out (if any) through frontend; backend, database and
    tools are internal, so what is on them alone (Redis, OpenLDAP, the data services, the Docker API proxy) has
    none. bootstrap/test_bootstrap.py probes that internal networks really hold."""
    internal = {name: stack.docker.networks.get(stack.network(name)).attrs["Internal"]
                for name in ("frontend", "backend", "database", "tools", "egress")}
    assert internal == {"frontend": False, "backend": True, "database": True, "tools": True, "egress": False}
    routed = {stack.network("frontend"), stack.network("egress")}
    with_a_route = {c.name.removeprefix(stack.prefix) for c in stack.containers()
                    if routed & set(c.attrs["NetworkSettings"]["Networks"])}
    on_egress = {c.name.removeprefix(stack.prefix) for c in stack.containers()
                 if stack.network("egress") in c.attrs["NetworkSettings"]["Networks"]}
    assert on_egress == {"backup"}
    assert not with_a_route & {"redis", "openldap", "qdrant", "clickhouse", "docker-proxy"}, with_a_route
