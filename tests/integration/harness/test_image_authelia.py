"""Self-test of the harness's Authelia image (tests/images/authelia).

Starts the real server with a minimal configuration (file users backend, SQLite storage, filesystem notifier,
secrets through ``AUTHELIA_*_FILE``) and checks it over a real connection from the host: the health endpoint, the
container's own HEALTHCHECK, first-factor login with a right and a wrong password, and that the session it hands out
is honoured by the access-control rules.

The image is Authelia 4.37.x (see tests/images/authelia/README.md for why), so the configuration uses the 4.37
schema (single ``session.domain``) and the forward-auth endpoint is ``/api/verify``.
"""
from __future__ import annotations

import io
import secrets
import shutil
import tarfile

import pytest
import requests

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("authelia")
AUTHELIA_UID = 8000  # the image's non-root user
PORT = 9091
COOKIE_DOMAIN = "example.test"
PORTAL_HOST = f"auth.{COOKIE_DOMAIN}"
PROTECTED_HOST = f"app.{COOKIE_DOMAIN}"
USERNAME = "alice"

CONFIGURATION = f"""\
server:
  host: 0.0.0.0
  port: {PORT}
log:
  level: info
default_redirection_url: https://www.{COOKIE_DOMAIN}/
authentication_backend:
  password_reset:
    disable: true
  file:
    path: /config/users.yml
    watch: false
access_control:
  default_policy: deny
  rules:
    - domain: {PROTECTED_HOST}
      policy: one_factor
session:
  name: authelia_session
  domain: {COOKIE_DOMAIN}
  expiration: 1h
  inactivity: 5m
regulation:
  max_retries: 3
  find_time: 2m
  ban_time: 5m
storage:
  local:
    path: /config/db.sqlite3
notifier:
  filesystem:
    filename: /config/notification.txt
"""

# Each secret is read from a file named by its *_FILE variable, so none of them is in the container's environment.
SECRET_ENV = {
    "AUTHELIA_JWT_SECRET_FILE": "/config/secrets/jwt_secret",
    "AUTHELIA_SESSION_SECRET_FILE": "/config/secrets/session_secret",
    "AUTHELIA_STORAGE_ENCRYPTION_KEY_FILE": "/config/secrets/storage_encryption_key",
}


def _argon2id_digest(docker_client, password: str) -> str:
    """Hash ``password`` with the image's own CLI, so the digest is exactly what this Authelia verifies."""
    output = docker_client.containers.run(
        IMAGE,
        ["crypto", "hash", "generate", "argon2", "--variant", "argon2id", "--password", password],
        labels=TEST_LABEL,
        network_disabled=True,
        remove=True,
    ).decode()
    digests = [line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Digest:")]
    assert digests and digests[0].startswith("$argon2id$"), f"unexpected hash output: {output!r}"
    return digests[0]


def _config_archive(directory, files: dict[str, tuple[str, int]]) -> bytes:
    """Write ``files`` (relative path -> (content, mode)) under ``directory`` and pack them as a tar owned by the
    image's user, for put_archive into /config (no bind mount: host ownership and permissions do not matter)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative, (content, mode) in sorted(files.items()):
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            parent = "/".join(relative.split("/")[:-1])
            if parent and parent not in tar.getnames():
                info = tarfile.TarInfo(parent)
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, AUTHELIA_UID, AUTHELIA_UID
                tar.addfile(info)
            info = tar.gettarinfo(str(path), arcname=relative)
            info.mode, info.uid, info.gid, info.uname, info.gname = mode, AUTHELIA_UID, AUTHELIA_UID, "", ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


@pytest.fixture
def authelia(docker_client, harness_network, tmp_path):
    """A started Authelia container; yields (container, base URL, password of USERNAME)."""
    password = secrets.token_urlsafe(18)
    users = (
        "users:\n"
        f"  {USERNAME}:\n"
        "    disabled: false\n"
        "    displayname: Alice Test\n"
        f"    password: '{_argon2id_digest(docker_client, password)}'\n"
        f"    email: {USERNAME}@{COOKIE_DOMAIN}\n"
        "    groups: [admins]\n"
    )
    files = {
        "configuration.yml": (CONFIGURATION, 0o600),
        "users.yml": (users, 0o600),
        **{target.removeprefix("/config/"): (secrets.token_hex(32), 0o400) for target in SECRET_ENV.values()},
    }
    # Created, filled through the API, then started: Authelia reads its configuration once, at start.
    container = docker_client.containers.create(
        IMAGE,
        name=f"authelia-{RUN_ID}-{secrets.token_hex(3)}",
        hostname="authelia",
        environment=SECRET_ENV,
        labels=TEST_LABEL,
        network=harness_network.name,
    )
    try:
        config_dir = tmp_path / "config"
        config_dir.mkdir(mode=0o700)
        try:
            container.put_archive("/config", _config_archive(config_dir, files))
        finally:
            # The container has its copy; the secrets do not stay on the host.
            shutil.rmtree(config_dir)
        container.start()
        base_url = f"http://{container_ip(container, harness_network.name)}:{PORT}"

        def healthy():
            container.reload()
            if container.status == "exited":
                raise AssertionError(f"authelia exited:\n{container.logs().decode(errors='replace')}")
            return requests.get(f"{base_url}/api/health", timeout=2).status_code == 200

        wait_until(healthy, timeout=60, what="authelia /api/health")
        yield container, base_url, password
    finally:
        container.remove(force=True, v=True)


def _portal_headers() -> dict[str, str]:
    # Requests arrive as the reverse proxy forwards them: for the portal's host, originally over HTTPS.
    return {"Host": PORTAL_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-Host": PORTAL_HOST}


def _login(base_url: str, password: str) -> requests.Response:
    return requests.post(
        f"{base_url}/api/firstfactor",
        json={
            "username": USERNAME,
            "password": password,
            "keepMeLoggedIn": False,
            "targetURL": f"https://{PROTECTED_HOST}/",
        },
        headers=_portal_headers(),
        timeout=10,
    )


def _verify(base_url: str, url: str, cookie: str | None = None) -> requests.Response:
    headers = {"X-Original-URL": url, "X-Forwarded-Method": "GET", "X-Forwarded-For": "192.0.2.10"}
    if cookie:
        headers["Cookie"] = f"authelia_session={cookie}"
    return requests.get(f"{base_url}/api/verify", headers=headers, timeout=10)


@pytest.mark.integration
def test_health_endpoint_and_container_healthcheck(authelia):
    container, base_url, _unused = authelia
    response = requests.get(f"{base_url}/api/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "OK"

    # The image's HEALTHCHECK must reach the same endpoint (Authelia rewrites /app/.healthcheck.env at start).
    def docker_says_healthy():
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(docker_says_healthy, timeout=60, what="Docker health status 'healthy'")
    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    assert uid == str(AUTHELIA_UID), "authelia must not run as root"
    version = container.exec_run(["authelia", "--version"]).output.decode()
    assert "v4." in version


@pytest.mark.integration
def test_first_factor_login_and_session(authelia):
    _unused, base_url, password = authelia

    wrong = _login(base_url, password + "x")
    assert wrong.status_code == 401
    assert wrong.json()["status"] == "KO"

    right = _login(base_url, password)
    assert right.status_code == 200, right.text
    assert right.json()["status"] == "OK"
    cookie = right.cookies.get("authelia_session")
    assert cookie, f"no session cookie in {right.headers.get('Set-Cookie')!r}"
    set_cookie = right.headers["Set-Cookie"].lower()
    assert f"domain={COOKIE_DOMAIN}" in set_cookie and "httponly" in set_cookie and "secure" in set_cookie

    # The session authorises the one_factor rule and nothing that falls to default_policy deny.
    allowed = _verify(base_url, f"https://{PROTECTED_HOST}/", cookie)
    assert allowed.status_code == 200
    assert allowed.headers.get("Remote-User") == USERNAME
    assert allowed.headers.get("Remote-Groups") == "admins"
    assert _verify(base_url, f"https://other.{COOKIE_DOMAIN}/", cookie).status_code == 403
    assert _verify(base_url, f"https://{PROTECTED_HOST}/").status_code == 401
