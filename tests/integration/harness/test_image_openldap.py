"""Self-test of the harness's OpenLDAP image (tests/images/openldap).

First start on empty volumes with a generated admin password file: the suffix exists, the admin can bind over
TCP from the host (a raw LDAPv3 simple bind, no client library needed) and a wrong password or an anonymous bind
is refused. Entries added afterwards, with the memberof overlay maintaining ``memberOf``, survive a restart and
a re-created container on the same volumes, which must not re-initialise anything (the new password file is
ignored). The password never shows up in logs, environment or command line.
"""
from __future__ import annotations

import io
import secrets
import socket
import tarfile

import pytest

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("openldap")
BASE_DN = "dc=stack,dc=local"
ADMIN_DN = f"cn=admin,{BASE_DN}"
PASSWORD_PATH = "/run/secrets/ldap_admin_password"
# The image is the openldap role's own build (tests/images/openldap links to roles/openldap/files/image).
OPENLDAP_UID = 1389

ENTRIES = f"""\
dn: ou=users,{BASE_DN}
objectClass: organizationalUnit
ou: users

dn: ou=groups,{BASE_DN}
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=users,{BASE_DN}
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: shadowAccount
uid: alice
cn: Alice Test
sn: Test
mail: alice@example.test
uidNumber: 10000
gidNumber: 10000
homeDirectory: /home/alice

dn: cn=staff,ou=groups,{BASE_DN}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=users,{BASE_DN}
"""


# --- a minimal LDAPv3 simple bind over TCP (BER by hand), so the host needs no LDAP library -----------------

def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _ber_length(len(value)) + value


def _read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, value, offset after the element)."""
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    else:
        length = first
    return tag, data[offset:offset + length], offset + length


def ldap_simple_bind(host: str, dn: str, password: str, port: int = 389) -> int:
    """Send a BindRequest and return the BindResponse resultCode (0 = success, 49 = invalid credentials)."""
    bind = _tlv(0x60, _tlv(0x02, b"\x03") + _tlv(0x04, dn.encode()) + _tlv(0x80, password.encode()))
    message = _tlv(0x30, _tlv(0x02, b"\x01") + bind)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(message)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            try:
                tag, envelope, end = _read_tlv(data, 0)
            except IndexError:
                continue
            if end <= len(data):
                break
    assert tag == 0x30, f"not an LDAPMessage: {data!r}"
    _unused, _unused, offset = _read_tlv(envelope, 0)  # messageID
    tag, response, _unused = _read_tlv(envelope, offset)
    assert tag == 0x61, f"not a BindResponse: {envelope!r}"
    tag, code, _unused = _read_tlv(response, 0)
    assert tag == 0x0A
    return int.from_bytes(code, "big")


# --- container helpers ----------------------------------------------------------------------------------------

def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """path (relative to /) -> (content, mode); owned by the image's openldap user (1389), which the container
    runs as, the way the openldap role hands it its secret files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            info.uid = info.gid = OPENLDAP_UID
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _wait_healthy(container, timeout: float = 60):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


def _exec(container, *command: str) -> str:
    result = container.exec_run(list(command))
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{command[0]} failed ({result.exit_code}): {output}"
    return output


def _search(container, base: str, *extra: str) -> str:
    # SASL EXTERNAL over ldapi as root in the container: manage rights, no password.
    return _exec(container, "ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///", "-b", base, *extra)


@pytest.fixture
def volumes(docker_client):
    made = []
    for purpose in ("data", "config"):
        made.append(docker_client.volumes.create(name=f"ldap-{purpose}-{RUN_ID}-{secrets.token_hex(3)}", labels=TEST_LABEL))
    yield {made[0].name: {"bind": "/var/lib/ldap", "mode": "rw"}, made[1].name: {"bind": "/etc/ldap/slapd.d", "mode": "rw"}}
    for volume in made:
        volume.remove(force=True)


@pytest.fixture
def start(start_container):
    """Create an OpenLDAP container, copy files in through the API, start it; removed after the test."""

    def _start(files: dict[str, tuple[bytes, int]] | None = None, **kwargs):
        # The image reads a hash file by default (the role's way); these tests hand it the plaintext variant.
        kwargs["environment"] = dict({"LDAP_ADMIN_PASSWORD_FILE": PASSWORD_PATH}, **kwargs.get("environment", {}))
        return start_container(IMAGE, "ldap", _tar(files) if files else None, **kwargs)

    return _start


@pytest.mark.integration
def test_first_start_bind_search_and_data_survives_restart(volumes, start, harness_network):
    # `volumes` before `start`: fixtures tear down in reverse, so containers go before their volumes.
    password = secrets.token_urlsafe(24)
    first = start({PASSWORD_PATH.lstrip("/"): (password.encode() + b"\n", 0o400)}, volumes=volumes)
    _wait_healthy(first)
    ip = container_ip(first, harness_network.name)

    # Binds from the host over TCP: right password, wrong password, anonymous.
    assert ldap_simple_bind(ip, ADMIN_DN, password) == 0
    assert ldap_simple_bind(ip, ADMIN_DN, password + "x") == 49
    assert ldap_simple_bind(ip, "", "") != 0, "anonymous binds must be refused"

    base = _search(first, BASE_DN, "-s", "base")
    assert f"dn: {BASE_DN}" in base and "o: Datamancy Stack" in base and "dc: stack" in base

    # Add entries as the admin over TCP. ldapadd -y sends the file's bytes verbatim (a trailing newline
    # included, unlike the entrypoint, which strips one), so it gets its own copy without the newline.
    first.put_archive("/tmp", _tar({"entries.ldif": (ENTRIES.encode(), 0o644), "admin.pw": (password.encode(), 0o400)}))
    _exec(first, "ldapadd", "-x", "-H", "ldap://127.0.0.1", "-D", ADMIN_DN, "-y", "/tmp/admin.pw", "-f", "/tmp/entries.ldif")
    alice = _search(first, f"uid=alice,ou=users,{BASE_DN}", "-s", "base", "memberOf")
    assert f"memberOf: cn=staff,ou=groups,{BASE_DN}" in alice, "the memberof overlay must maintain memberOf"

    # slapd runs as the openldap user; the password is in no log, variable or argument.
    processes = first.top(ps_args="-o pid,uid,args")["Processes"]
    slapd_uids = {row[1] for row in processes if "slapd" in row[2] and "entrypoint" not in row[2]}
    assert slapd_uids and "0" not in slapd_uids
    first.reload()
    assert password not in first.logs().decode(errors="replace")
    assert password not in " ".join(first.attrs["Config"]["Env"] + (first.attrs["Config"]["Cmd"] or []))
    assert all(password not in row[2] for row in processes)

    # A restart keeps the entries.
    first.restart(timeout=20)
    _wait_healthy(first)
    assert "uid: alice" in _search(first, f"ou=users,{BASE_DN}", "(uid=alice)", "uid")

    # A new container on the same volumes starts without re-initialising: the new password file is ignored.
    # Once the volumes exist it can run fully unprivileged (the hardened way a role may run it).
    first.remove(force=True)
    new_password = secrets.token_urlsafe(24)
    second = start(
        {PASSWORD_PATH.lstrip("/"): (new_password.encode(), 0o400)},
        volumes=volumes,
        user="openldap",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    _wait_healthy(second)
    assert "existing configuration found" in second.logs().decode(errors="replace")
    ip = container_ip(second, harness_network.name)
    assert ldap_simple_bind(ip, ADMIN_DN, password) == 0
    assert ldap_simple_bind(ip, ADMIN_DN, new_password) == 49
    assert f"memberOf: cn=staff,ou=groups,{BASE_DN}" in _search(second, f"uid=alice,ou=users,{BASE_DN}", "-s", "base", "memberOf")
    assert second.exec_run(["id", "-un"]).output.decode().strip() == "openldap"


@pytest.mark.integration
def test_configurable_base_dn(start, harness_network):
    password = secrets.token_urlsafe(24)
    container = start(
        {PASSWORD_PATH.lstrip("/"): (password.encode(), 0o400)},
        environment={"LDAP_BASE_DN": "dc=example,dc=org", "LDAP_ORGANISATION": "Example Org"},
    )
    _wait_healthy(container)
    base = _search(container, "dc=example,dc=org", "-s", "base")
    assert "o: Example Org" in base and "dc: example" in base
    ip = container_ip(container, harness_network.name)
    assert ldap_simple_bind(ip, "cn=admin,dc=example,dc=org", password) == 0
    # The schemas the stack's users need are loaded.
    schemas = _exec(container, "ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///", "-b", "cn=schema,cn=config", "-s", "one", "cn")
    for schema in ("core", "cosine", "nis", "inetorgperson"):
        assert f"}}{schema}" in schemas


@pytest.mark.integration
def test_first_start_without_password_file_fails_clearly(start):
    container = start()
    result = container.wait(timeout=60)
    assert result["StatusCode"] != 0
    assert "first start needs LDAP_ADMIN_PASSWORD_HASH_FILE or LDAP_ADMIN_PASSWORD_FILE" in container.logs().decode(
        errors="replace")
