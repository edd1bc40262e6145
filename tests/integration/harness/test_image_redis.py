"""Self-test of the harness's Redis image (tests/images/redis).

With ``REDIS_PASSWORD_FILE`` set, a client on the network gets NOAUTH until it authenticates, a wrong password is
refused, and the right one gives PONG (spoken as raw RESP from the host). The password must not be visible on the
command line or in the environment; the server runs as the redis user; data survives a restart.
"""
from __future__ import annotations

import io
import secrets
import socket
import tarfile

import pytest

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("redis")
PASSWORD_PATH = "/run/secrets/redis_password"


class Resp:
    """A tiny RESP2 client: enough for AUTH, PING, SET and GET."""

    def __init__(self, host: str, port: int = 6379):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def command(self, *args: str):
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            raw = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        self.sock.sendall(b"".join(parts))
        line = self.file.readline().rstrip(b"\r\n").decode()
        kind, rest = line[0], line[1:]
        if kind == "$":
            if rest == "-1":
                return None
            data = self.file.read(int(rest) + 2)
            return data[:-2].decode()
        return line  # "+OK", "-ERR ...", ":1" as they came

    def close(self):
        self.file.close()
        self.sock.close()


def _redis_uid(docker_client) -> int:
    out = docker_client.containers.run(IMAGE, entrypoint=["id", "-u"], labels=TEST_LABEL, network_disabled=True, remove=True)
    return int(out.decode().strip())


def _tar(path: str, content: bytes, uid: int, mode: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path)
        info.size, info.uid, info.gid, info.mode = len(content), uid, uid, mode
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def redis(docker_client, harness_network):
    """A Redis container whose password comes from a 0400 file owned by the redis user."""
    # Quotes and a backslash exercise the entrypoint's escaping of the config value.
    password = secrets.token_urlsafe(24) + '"\\'
    uid = _redis_uid(docker_client)
    container = docker_client.containers.create(
        IMAGE,
        name=f"redis-{RUN_ID}-{secrets.token_hex(3)}",
        hostname="redis",
        environment={"REDIS_PASSWORD_FILE": PASSWORD_PATH},
        labels=TEST_LABEL,
        network=harness_network.name,
        # The runtime config (with the password) belongs on a tmpfs in production; test that it works there.
        tmpfs={"/run/redis": "rw,noexec,nosuid,size=1m,uid=%d,mode=0700" % uid},
    )
    try:
        container.put_archive("/", _tar(PASSWORD_PATH.lstrip("/"), password.encode() + b"\n", uid, 0o400))
        container.start()
        yield container, password
    finally:
        container.remove(force=True, v=True)


def _wait_healthy(container, timeout: float = 60):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


@pytest.mark.integration
def test_password_required_and_ping(redis, harness_network):
    container, password = redis
    _wait_healthy(container)  # the HEALTHCHECK authenticates with the same file
    ip = container_ip(container, harness_network.name)

    client = Resp(ip)
    try:
        assert client.command("PING").startswith("-NOAUTH")
        assert client.command("AUTH", password + "x").startswith("-WRONGPASS")
        assert client.command("AUTH", password) == "+OK"
        assert client.command("PING") == "+PONG"
        assert client.command("SET", "harness:key", "kept") == "+OK"
    finally:
        client.close()

    # The password is nowhere in the process list, the environment or the container's command.
    processes = container.top(ps_args="-o pid,uid,args")["Processes"]
    assert all(password not in row[2] for row in processes)
    server_uids = {row[1] for row in processes if "redis-server" in row[2]}
    assert server_uids and "0" not in server_uids, "redis-server must not run as root"
    container.reload()
    config = container.attrs["Config"]
    assert password not in " ".join((config["Env"] or []) + (config["Cmd"] or []) + (config["Entrypoint"] or []))
    assert password not in container.logs().decode(errors="replace")

    # Data in /data (append-only file) survives a restart.
    container.restart(timeout=20)
    _wait_healthy(container)
    client = Resp(container_ip(container, harness_network.name))
    try:
        assert client.command("AUTH", password) == "+OK"
        assert client.command("GET", "harness:key") == "kept"
    finally:
        client.close()


@pytest.mark.integration
def test_without_password_remote_clients_are_refused(docker_client, harness_network):
    # No REDIS_PASSWORD_FILE: protected mode keeps non-loopback clients out, so a forgotten secret fails closed.
    container = docker_client.containers.run(
        IMAGE, name=f"redis-open-{RUN_ID}-{secrets.token_hex(3)}", labels=TEST_LABEL, network=harness_network.name, detach=True,
    )
    try:
        _wait_healthy(container)
        client = Resp(container_ip(container, harness_network.name))
        try:
            assert client.command("PING").startswith("-DENIED")
        finally:
            client.close()
    finally:
        container.remove(force=True, v=True)
