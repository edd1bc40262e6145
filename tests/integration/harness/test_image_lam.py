"""Self-test of the harness's LDAP Account Manager image (tests/images/lam).

/lam/ answers from the host with LAM's login page; apache's workers do not run as root; the configuration
directory is not served. Configuration files written into /var/lib/ldap-account-manager/config (what a role
does, see tests/images/lam/README.md) are used as they are and never overwritten; without them the image
invents no well-known password.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import tarfile
import time

import pytest
import requests

from conftest import container_ip, local_image, wait_until

IMAGE = local_image("lam")
CONFIG_DIR = "var/lib/ldap-account-manager/config"
WWW_DATA = 33


def lam_ssha(password: str) -> str:
    """LAM's {SSHA} format for config.cfg / *.conf passwords: base64(sha1(pw + salt)) + " " + base64(salt)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest).decode() + " " + base64.b64encode(salt).decode()


def _tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            raw = content.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid = len(raw), 0o600, WWW_DATA, WWW_DATA
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def _read(container, path: str) -> str:
    stream, _unused = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()


def _wait_healthy(container, timeout: float = 60):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


@pytest.fixture
def start(start_container):
    def _start(files: dict[str, str] | None = None, **kwargs):
        return start_container(IMAGE, "lam", _tar(files) if files else None, **kwargs)

    return _start


@pytest.mark.integration
def test_login_page_non_root_workers_and_no_default_password(start, harness_network):
    container = start()
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}"

    index = requests.get(f"{base}/lam/", timeout=10)
    assert index.status_code == 200 and "LDAP Account Manager" in index.text
    login = requests.get(f"{base}/lam/templates/login.php", timeout=10)
    assert login.status_code == 200
    assert 'name="passwd"' in login.text and 'name="username"' in login.text
    assert requests.get(f"{base}/", allow_redirects=False, timeout=10).headers["Location"].endswith("/lam/")

    # The configuration (with password hashes) is never served.
    assert requests.get(f"{base}/lam/config/config.cfg", timeout=10).status_code == 403
    assert requests.get(f"{base}/lam/config/lam.conf", timeout=10).status_code == 403

    # Only apache's master keeps root (to bind port 80); workers run as www-data.
    processes = container.top(ps_args="-o pid,uid,args")["Processes"]
    apache = [row for row in processes if row[2].startswith(("apache2", "/usr/sbin/apache2"))]
    assert [row[1] for row in apache].count("0") == 1
    assert len(apache) >= 2 and all(row[1] in ("0", str(WWW_DATA)) for row in apache)

    # Without mounted files the image does not fall back to LAM's well-known "lam" password.
    config_cfg = _read(container, f"/{CONFIG_DIR}/config.cfg")
    profile = _read(container, f"/{CONFIG_DIR}/lam.conf")
    assert config_cfg.startswith("password: {SSHA}")
    assert "\nPasswd: {SSHA}" in profile and "\nPasswd: lam" not in profile
    package_default_hash = "{SSHA}D6AaX93kPmck9wAxNlq3GF93S7A= R7gkjQ=="  # Debian's config.cfg, password "lam"
    assert package_default_hash not in config_cfg

    # Apache is PID 1's direct child and stops promptly on SIGTERM.
    started = time.monotonic()
    container.stop(timeout=20)
    assert time.monotonic() - started < 10


@pytest.mark.integration
def test_mounted_configuration_is_used_and_kept(start, harness_network):
    master_hash = lam_ssha(secrets.token_urlsafe(16))
    profile_hash = lam_ssha(secrets.token_urlsafe(16))
    config_cfg = f"password: {master_hash}\ndefault: stack\nlogLevel: 4\nlogDestination: SYSLOG\nconfigDatabaseType: files\n"
    profile = (
        "ServerURL: ldap://ldap.example.test:389\n"
        "Admins: cn=admin,dc=stack,dc=local\n"
        f"Passwd: {profile_hash}\n"
        "tools: treeViewSuffix: dc=stack,dc=local\n"
        "defaultLanguage: en_GB.utf8\n"
        "activeTypes: user,group\n"
        "types: suffix_user: ou=users,dc=stack,dc=local\n"
        "types: attr_user: #uid;#givenName;#sn;#mail\n"
        "types: modules_user: inetOrgPerson,posixAccount,shadowAccount\n"
        "types: suffix_group: ou=groups,dc=stack,dc=local\n"
        "types: attr_group: #cn;#description\n"
        "types: modules_group: groupOfNames\n"
    )
    # Run the way the role should (see the image README): only the capabilities the entrypoint and apache's
    # master need, no privilege escalation.
    container = start(
        {f"{CONFIG_DIR}/config.cfg": config_cfg, f"{CONFIG_DIR}/stack.conf": profile},
        cap_drop=["ALL"],
        cap_add=["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "DAC_OVERRIDE", "FOWNER"],
        security_opt=["no-new-privileges"],
    )
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}"

    login = requests.get(f"{base}/lam/templates/login.php", timeout=10)
    assert login.status_code == 200
    assert "ldap://ldap.example.test:389" in login.text, "the mounted server profile must be the one in use"
    assert ">stack</option>" in login.text

    # Mounted files are untouched; no extra lam.conf is invented when a profile exists.
    assert _read(container, f"/{CONFIG_DIR}/config.cfg") == config_cfg
    assert _read(container, f"/{CONFIG_DIR}/stack.conf") == profile
    listing = container.exec_run(["ls", f"/{CONFIG_DIR}"]).output.decode().split()
    assert "lam.conf" not in listing
    assert "templates" in listing and "language" in listing  # non-secret defaults were seeded
