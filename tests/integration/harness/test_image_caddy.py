"""Self-test of the harness's Caddy image (tests/images/caddy).

Serves a virtual host over TLS with Caddy's internal CA (`local_certs`), fetches that CA's root certificate out
of the container and verifies the TLS connection against it from the host, with SNI. Also checks the image's
contract for hardened runs: non-root, ports 80/443 bindable with only NET_BIND_SERVICE, read-only root file
system, no-new-privileges; and that dropping every capability makes the binary refuse to start (the file
capability needs NET_BIND_SERVICE in the bounding set), which the role must account for.
"""
from __future__ import annotations

import io
import secrets
import ssl
import tarfile

import pytest
import requests
import urllib3

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("caddy")
CADDY_UID = 1000
VHOST = "app.example.test"
BODY = f"hello from caddy {secrets.token_hex(4)}"
CADDYFILE = f"""\
{{
    local_certs
    skip_install_trust
}}

{VHOST} {{
    respond "{BODY}" 200
}}
"""
ROOT_CA = "/data/caddy/pki/authorities/local/root.crt"


def _tar(files: dict[str, tuple[bytes, int, int]]) -> bytes:
    """path (relative to /) -> (content, uid, mode), packed for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (content, uid, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.uid, info.gid, info.mode = len(content), uid, uid, mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _read_file(container, path: str) -> bytes:
    stream, _unused = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read()


def _wait_healthy(container, timeout: float = 60):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


@pytest.fixture
def start(start_container):
    """Create a Caddy container, copy files in through the API, start it; removed after the test."""

    def _start(files: dict[str, tuple[bytes, int, int]] | None = None, **kwargs):
        return start_container(IMAGE, "caddy", _tar(files) if files else None, **kwargs)

    return _start


@pytest.mark.integration
def test_tls_vhost_with_local_ca(start, harness_network, tmp_path):
    container = start({"etc/caddy/Caddyfile": (CADDYFILE.encode(), 0, 0o644)})
    _wait_healthy(container)
    ip = container_ip(container, harness_network.name)

    # The internal CA is created at first start; fetch its root the way a test or role would.
    root_pem = wait_until(lambda: _read_file(container, ROOT_CA), timeout=30, what="Caddy's local root CA")
    assert root_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    ca_file = tmp_path / "caddy-root.crt"
    ca_file.write_bytes(root_pem)

    # Connect to the container's IP but send SNI and Host for the vhost, and verify the chain and the name.
    pool = urllib3.HTTPSConnectionPool(
        ip, 443, server_hostname=VHOST, assert_hostname=VHOST, ca_certs=str(ca_file), cert_reqs="CERT_REQUIRED",
        retries=False, timeout=10,
    )

    def served():
        try:
            response = pool.request("GET", "/", headers={"Host": VHOST})
        except urllib3.exceptions.HTTPError:  # certificate not issued yet, listener not up yet
            return None
        return response if response.status == 200 else None

    response = wait_until(served, timeout=30, what="the TLS vhost")
    assert response.data.decode() == BODY

    # Verification is real: the system CAs do not trust Caddy's internal CA.
    untrusted = urllib3.HTTPSConnectionPool(
        ip, 443, server_hostname=VHOST, assert_hostname=VHOST, cert_reqs="CERT_REQUIRED", retries=False, timeout=10,
    )
    with pytest.raises(urllib3.exceptions.SSLError) as failure:
        untrusted.request("GET", "/", headers={"Host": VHOST})
    assert isinstance(failure.value.__context__, ssl.SSLCertVerificationError) or "certificate verify failed" in str(failure.value)

    # Plain HTTP for the vhost is redirected to HTTPS (automatic HTTPS).
    redirect = requests.get(f"http://{ip}/", headers={"Host": VHOST}, allow_redirects=False, timeout=10)
    assert redirect.status_code == 308
    assert redirect.headers["Location"] == f"https://{VHOST}/"

    # Caddy itself runs as the image's non-root user.
    uids = {row[1] for row in container.top(ps_args="-o pid,uid,comm")["Processes"] if row[2] == "caddy"}
    assert uids == {str(CADDY_UID)}


@pytest.mark.integration
def test_hardened_run_binds_port_80_as_non_root(start, harness_network):
    # What the role is expected to run: every capability dropped except NET_BIND_SERVICE, no privilege
    # escalation, read-only root file system (state lives in the /data and /config volumes).
    container = start(
        cap_drop=["ALL"],
        cap_add=["NET_BIND_SERVICE"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
    )
    _wait_healthy(container)
    ip = container_ip(container, harness_network.name)
    # The image's placeholder Caddyfile answers every request on :80 with 404 and a fixed text.
    response = requests.get(f"http://{ip}/", timeout=10)
    assert response.status_code == 404
    assert response.text == "datamancy caddy: no site configured"
    assert container.exec_run(["id", "-u"]).output.decode().strip() == str(CADDY_UID)


@pytest.mark.integration
def test_without_net_bind_service_the_binary_cannot_start(docker_client):
    # /usr/bin/caddy carries cap_net_bind_service=+ep. When that capability is not in the bounding set the
    # kernel refuses the exec: a role that drops ALL must add NET_BIND_SERVICE back.
    container = docker_client.containers.run(
        IMAGE, name=f"caddy-nocap-{RUN_ID}-{secrets.token_hex(3)}", labels=TEST_LABEL, cap_drop=["ALL"],
        network_disabled=True, detach=True,
    )
    try:
        result = container.wait(timeout=30)
        assert result["StatusCode"] != 0
        assert b"Operation not permitted" in container.logs()
    finally:
        container.remove(force=True, v=True)
