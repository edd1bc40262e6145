"""compose_export: recorded container definitions -> a Compose document with the same hardening, validated by
Debian's docker-compose when it is installed (scripts/lib/setup.sh installs it with the engine)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.compose import compose_export

SERVICES = {
    "caddy": {"mode": "bootstrap", "networks": ["frontend"], "depends_on": ["authelia"],
              "cap_add": ["NET_BIND_SERVICE"], "no_new_privileges": False},
    "authelia": {"mode": "bootstrap", "networks": ["frontend", "backend"], "depends_on": ["redis"]},
    "redis": {"mode": "bootstrap", "networks": ["backend"]},
}
NETWORKS = [{"name": "frontend", "internal": False}, {"name": "backend", "internal": "True"},
            {"name": "database", "internal": True}]
HEALTH = 'REDISCLI_AUTH="$(cat /run/secrets/pw)" redis-cli ping'
SPECS = {
    "redis": {
        "service": "redis", "image": "redis:7", "user": "999:999", "entrypoint": ["redis-server"],
        "command": ["/etc/datamancy/redis.conf"], "restart": False,
        "mounts": [{"type": "bind", "source": "/opt/d/redis/redis.conf", "target": "/etc/datamancy/redis.conf",
                    "read_only": True},
                   {"type": "volume", "source": "t_redis_data", "target": "/data"}],
        "healthcheck": {"test": ["CMD-SHELL", HEALTH], "interval": "10s", "retries": 5},
    },
    "authelia": {
        "service": "authelia", "image": "authelia:4", "env": {"TZ": "UTC", "PORT": 9091},
        "env_file": "/opt/d/authelia/authelia.env", "tmpfs": ["/tmp:rw,size=1m"],
    },
    "caddy": {"service": "caddy", "image": "caddy:2", "published_ports": ["127.0.0.1:8443:443"]},
}


def export():
    return compose_export(SPECS, SERVICES, NETWORKS, container_prefix="t-", network_prefix="t-",
                          vhosts=[{"fqdn": "auth.example.test"}])


def test_every_service_keeps_the_runners_hardening():
    services = export()["services"]
    for entry in services.values():
        assert entry["cap_drop"] == ["ALL"] and entry["read_only"] is True
        assert entry["restart"] == "unless-stopped"
    assert services["redis"]["security_opt"] == ["no-new-privileges:true"]
    assert services["redis"]["tmpfs"] == ["/tmp:rw,noexec,nosuid,size=64m"]
    assert services["authelia"]["tmpfs"] == ["/tmp:rw,size=1m"]
    # The registry's exception travels with the service: caddy gets its one capability back, no flag.
    assert services["caddy"]["cap_add"] == ["NET_BIND_SERVICE"] and "security_opt" not in services["caddy"]
    assert services["caddy"]["ports"] == ["127.0.0.1:8443:443"]
    assert "ports" not in services["redis"] and "ports" not in services["authelia"]


def test_names_networks_and_volumes_are_the_roles_ones():
    document = export()
    assert document["services"]["redis"]["container_name"] == "t-redis"
    assert document["networks"] == {"frontend": {"name": "t-frontend", "internal": False},
                                    "backend": {"name": "t-backend", "internal": True}}
    assert document["services"]["caddy"]["networks"]["frontend"]["aliases"] == ["caddy", "auth.example.test"]
    assert document["volumes"] == {"t_redis_data": {"name": "t_redis_data"}}
    assert document["services"]["authelia"]["depends_on"] == ["redis"]
    assert document["services"]["authelia"]["environment"] == {"TZ": "UTC", "PORT": "9091"}
    assert document["services"]["authelia"]["env_file"] == ["/opt/d/authelia/authelia.env"]


def test_nothing_recorded_is_an_error():
    with pytest.raises(AnsibleFilterError, match="stack_compose_export"):
        compose_export({}, SERVICES, NETWORKS)


def test_unknown_network_is_an_error():
    services = dict(SERVICES, redis={"mode": "bootstrap", "networks": ["elsewhere"]})
    with pytest.raises(AnsibleFilterError, match="elsewhere"):
        compose_export(SPECS, services, NETWORKS)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_debian_docker_compose_accepts_the_document(tmp_path):
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(export()))
    # config only parses and validates: no engine needed, but env_file must exist.
    (tmp_path / "env").write_text("")
    document = yaml.safe_load(path.read_text())
    document["services"]["authelia"]["env_file"] = [str(tmp_path / "env")]
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(["docker-compose", "-f", str(path), "-p", "t", "config"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    # $ is escaped, so Compose does not interpolate the health check's $(...) (config prints it escaped again).
    assert yaml.safe_load(result.stdout)["services"]["redis"]["healthcheck"]["test"][1] == HEALTH.replace("$", "$$")
