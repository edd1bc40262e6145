"""Self-test of the harness's ClickHouse image (tests/images/clickhouse, Debian's 18.16).

A user defined in a mounted users.d file (SHA-256 password) can query over HTTP from the host; a wrong password
is refused; the packaged passwordless ``default`` user is only allowed from inside the container. Both the HTTP
(8123) and native (9000) ports listen on the container's address, the replication port does not, the server
runs as the clickhouse user and a MergeTree table keeps its rows across a restart.
"""
from __future__ import annotations

import hashlib
import io
import secrets
import socket
import tarfile

import pytest
import requests

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("clickhouse")
USER = "app"


def _users_xml(password: str) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"""<?xml version="1.0"?>
<yandex>
    <users>
        <{USER}>
            <password_sha256_hex>{digest}</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{USER}>
    </users>
</yandex>
"""


def _tar(path: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _wait_healthy(container, timeout: float = 90):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


@pytest.fixture
def clickhouse(docker_client, harness_network):
    password = secrets.token_urlsafe(24)
    container = docker_client.containers.create(
        IMAGE,
        name=f"clickhouse-{RUN_ID}-{secrets.token_hex(3)}",
        hostname="clickhouse",
        labels=TEST_LABEL,
        network=harness_network.name,
    )
    try:
        container.put_archive("/", _tar(f"etc/clickhouse-server/users.d/{USER}.xml", _users_xml(password).encode()))
        container.start()
        yield container, password
    finally:
        container.remove(force=True, v=True)


def _query(base: str, sql: str, user: str, password: str) -> requests.Response:
    return requests.post(base, params={"query": sql}, auth=(user, password), timeout=10)


@pytest.mark.integration
def test_ping_auth_and_users_d(clickhouse, harness_network):
    container, password = clickhouse
    _wait_healthy(container)
    ip = container_ip(container, harness_network.name)
    base = f"http://{ip}:8123/"

    ping = requests.get(f"{base}ping", timeout=10)
    assert ping.status_code == 200 and ping.content == b"Ok.\n"

    ok = _query(base, "SELECT 1", USER, password)
    assert ok.status_code == 200 and ok.text == "1\n"

    wrong = _query(base, "SELECT 1", USER, password + "x")
    assert wrong.status_code != 200
    assert "password" in wrong.text.lower()

    # The packaged `default` user has no password: the image restricts it to loopback.
    default_remote = _query(base, "SELECT 1", "default", "")
    assert default_remote.status_code != 200
    local = container.exec_run(["clickhouse-client", "--user", "default", "--query", "SELECT 41 + 1"])
    assert local.exit_code == 0 and local.output.decode().strip() == "42", local.output

    # Native protocol port listens on the container address; the interserver port (9009) does not.
    with socket.create_connection((ip, 9000), timeout=5):
        pass
    with pytest.raises(OSError):
        socket.create_connection((ip, 9009), timeout=5).close()

    processes = container.top(ps_args="-o pid,uid,args")["Processes"]
    server_uids = {row[1] for row in processes if "clickhouse-server" in row[2]}
    assert server_uids and "0" not in server_uids, "clickhouse-server must not run as root"


@pytest.mark.integration
def test_mergetree_table_survives_restart(clickhouse, harness_network):
    container, password = clickhouse
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:8123/"
    statements = [
        "CREATE TABLE harness_values (day Date, series String, value Float64) "
        "ENGINE = MergeTree() PARTITION BY toYYYYMM(day) ORDER BY (series, day)",
        "INSERT INTO harness_values VALUES ('2024-01-01', 'a', 1.5), ('2024-02-01', 'a', 2.5), ('2024-02-01', 'b', 4)",
    ]
    for sql in statements:
        response = _query(base, sql, USER, password)
        assert response.status_code == 200, response.text

    container.restart(timeout=30)
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:8123/"
    response = _query(base, "SELECT series, sum(value) FROM harness_values GROUP BY series ORDER BY series", USER, password)
    assert response.status_code == 200, response.text
    assert response.text == "a\t4\nb\t4\n"
