"""Bootstrap mode, deployed for real and checked from outside like a user would: every vhost of the registry is
behind Authelia (LDAP users, TOTP for admins), identity headers cannot be forged, the networks are segregated and
a second run changes nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml

from stacklib import StackDeployment, authelia_register_totp, json_or_none, resolve_to_loopback

HERE = Path(__file__).resolve().parent
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API_CLIENT = {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(extra_vars=yaml.safe_load((HERE / "vars.yml").read_text()))
    first = deployment.playbook("tests/integration/bootstrap/converge.yml")
    try:
        assert first.returncode == 0, first.output[-6000:]
        deployment.first_run = first
        with resolve_to_loopback(deployment.domain):
            yield deployment
    finally:
        deployment.destroy()


def login(stack: StackDeployment, user: str, target: str) -> requests.Session:
    """First factor through Authelia's API with the user's generated initial password."""
    session = stack.session()
    response = session.post(stack.url("auth", "/api/firstfactor"), json={
        "username": user, "password": stack.read_secret(f"ldap_user_{user}_password"),
        "keepMeLoggedIn": False, "targetURL": target})
    assert response.status_code == 200, response.text
    assert json_or_none(response)["status"] == "OK"
    return session


def register_and_pass_totp(stack: StackDeployment, session: requests.Session, target: str) -> None:
    """Register a TOTP device the way the portal does and pass the second factor with it."""
    authelia_register_totp(session, stack.url("auth"), stack.base_dir / "authelia" / "data" / "notification.txt",
                           target)


def test_without_a_session_every_protected_vhost_redirects_browsers_to_the_portal(stack):
    for host in ("whoami", "lam"):
        response = stack.session().get(stack.url(host), headers=BROWSER, allow_redirects=False)
        assert response.status_code == 302, (host, response.status_code)
        assert response.headers["Location"].startswith(f"https://auth.{stack.domain}/"), response.headers


def test_without_a_session_non_browser_clients_get_401(stack):
    for host in ("whoami", "lam"):
        response = stack.session().get(stack.url(host), headers=API_CLIENT, allow_redirects=False)
        assert response.status_code == 401, (host, response.status_code)


def test_a_forged_identity_without_a_session_never_reaches_the_upstream(stack):
    forged = {**API_CLIENT, "Remote-User": "alice", "Remote-Groups": "admins"}
    response = stack.session().get(stack.url("whoami"), headers=forged, allow_redirects=False)
    assert response.status_code == 401
    assert "headers" not in (json_or_none(response) or {})


def test_a_user_reaches_an_sso_vhost_and_the_upstream_sees_authelias_identity(stack):
    target = stack.url("whoami")
    session = login(stack, "bob", target)
    response = session.get(target, headers={"Remote-User": "mallory", "Remote-Groups": "admins",
                                            "Remote-Email": "mallory@evil.test"})
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["Remote-User"] == "bob"
    assert seen["Remote-Groups"] == "users"
    assert seen["Remote-Email"] == "bob@example.test"
    assert "mallory" not in response.text and "admins" not in response.text


def test_a_non_admin_is_refused_on_an_admin_only_vhost(stack):
    session = login(stack, "bob", stack.url("lam"))
    response = session.get(stack.url("lam", "/lam/"), headers=BROWSER, allow_redirects=False)
    assert response.status_code == 403


def test_an_admin_needs_totp_then_reaches_admin_and_user_vhosts(stack):
    target = stack.url("lam", "/lam/")
    session = login(stack, "alice", target)
    # One factor is not enough for an admin.
    assert session.get(target, headers=API_CLIENT, allow_redirects=False).status_code == 401
    register_and_pass_totp(stack, session, target)
    response = session.get(target, allow_redirects=False)
    assert response.status_code == 200
    assert "LDAP Account Manager" in response.text
    seen = session.get(stack.url("whoami")).json()["headers"]
    assert seen["Remote-User"] == "alice"
    assert set(seen["Remote-Groups"].split(",")) == {"admins", "users"}


def test_no_upstream_receives_the_sso_session_cookie(stack):
    """The upstream gets its own cookies, never the user's Authelia session (which it could replay on every other
    vhost); the echo upstream shows exactly what Caddy sent it."""
    session = login(stack, "bob", stack.url("whoami"))
    assert session.cookies.get("authelia_session"), "no session cookie to strip"
    for cookies in ({"app_pref": "dark"}, {"app_pref": "dark", "zz_last": "1"}):
        for name, value in cookies.items():
            session.cookies.set(name, value, domain=f"whoami.{stack.domain}")
        seen = session.get(stack.url("whoami"), allow_redirects=False)
        assert seen.status_code == 200, seen.text
        cookie = seen.json()["headers"].get("Cookie", "")
        assert "authelia_session" not in cookie, cookie
        assert sorted(part.strip() for part in cookie.split(";") if part.strip()) == sorted(
            f"{name}={value}" for name, value in cookies.items()), cookie
    assert seen.json()["headers"]["Remote-User"] == "bob"


def test_a_wrong_password_is_refused(stack):
    response = stack.session().post(stack.url("auth", "/api/firstfactor"), json={
        "username": "bob", "password": "not-the-password", "keepMeLoggedIn": False})
    assert response.status_code == 401


def test_an_unknown_hostname_is_refused(stack):
    with pytest.raises(requests.exceptions.SSLError):
        stack.session().get(stack.url("nothing-here"))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://nothing-here.{stack.domain}:{stack.http_port}/", timeout=10)


def test_only_caddy_publishes_ports(stack):
    publishing = {c.name for c in stack.containers() if c.attrs["HostConfig"].get("PortBindings")}
    assert publishing == {f"{stack.prefix}caddy"}
    assert len(stack.containers()) >= 6


CONNECT = (
    "import socket, sys\n"
    "for host, port in {targets!r}:\n"
    "    try:\n"
    "        socket.create_connection((host, port), timeout=3).close(); print('reached', host, port)\n"
    "    except OSError as error: print('refused', host, port, type(error).__name__)\n"
)


@pytest.mark.parametrize("inside", ["database", "backend"])
def test_a_container_on_an_internal_network_cannot_reach_outside(stack, inside):
    """'Outside' without leaving this machine: a listener on a network of our own, and the host itself through
    the network's gateway (where Caddy publishes). A control probe shows the listener does answer. backend is
    where Redis and OpenLDAP live, on it alone: they cannot reach the internet."""
    network = stack.docker.networks.get(stack.network(inside))
    assert network.attrs["Internal"] is True
    outside = stack.docker.networks.create(f"{stack.prefix}outside-{inside}", labels={"datamancy.test": stack.run_id})
    listener = stack.docker.containers.run(
        "datamancy-test/debian:bookworm", ["python3", "-m", "http.server", "8000"], network=outside.name,
        name=f"{stack.prefix}outside-listener", detach=True, labels={"datamancy.test": stack.run_id})
    try:
        listener.reload()
        listener_ip = listener.attrs["NetworkSettings"]["Networks"][outside.name]["IPAddress"]
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        code, output = stack.probe(outside.name, CONNECT.format(targets=[(listener_ip, 8000)]))
        assert "reached" in output, f"control probe failed: {output}"
        code, output = stack.probe(inside, CONNECT.format(
            targets=[(listener_ip, 8000), (gateway, stack.https_port), (gateway, 22)]))
        assert code == 0 and "reached" not in output and output.count("refused") == 3, output
    finally:
        listener.remove(force=True)
        outside.remove()


def test_ldap_and_redis_are_not_reachable_from_the_frontend_network(stack):
    targets = [("openldap", 389), ("redis", 6379)]
    targets += [(stack.container(name).attrs["NetworkSettings"]["Networks"][stack.network("backend")]["IPAddress"],
                 port) for name, port in targets]
    code, output = stack.probe("frontend", CONNECT.format(targets=targets))
    assert code == 0
    assert "reached" not in output and output.count("refused") == 4, output


def test_a_routable_backend_of_an_earlier_release_becomes_internal_and_keeps_its_containers(stack):
    """Deployments made before backend was internal have a routable one. The next converge recreates it as
    internal (Docker cannot change the flag in place) and every container on it is connected again: sign-in, which
    needs Authelia to reach Redis and OpenLDAP over backend, works after it."""
    def on_backend():
        network = stack.docker.networks.get(stack.network("backend"))
        return network.attrs["Internal"], {c["Name"] for c in network.attrs["Containers"].values()}

    internal, members = on_backend()
    assert internal is True and {f"{stack.prefix}redis", f"{stack.prefix}openldap"} <= members
    earlier = stack.playbook("tests/integration/bootstrap/converge.yml", docker_host_backend_internal=False)
    assert earlier.returncode == 0, earlier.output[-4000:]
    assert on_backend() == (False, members)

    upgraded = stack.playbook("tests/integration/bootstrap/converge.yml")
    assert upgraded.returncode == 0, upgraded.output[-4000:]
    assert on_backend() == (True, members)
    response = login(stack, "bob", stack.url("whoami")).get(stack.url("whoami"), headers=BROWSER, timeout=30)
    assert response.status_code == 200, response.text[:500]


def test_a_second_run_changes_nothing(stack):
    secrets_before = stack.store_snapshot()
    ldap_before = stack.exec("openldap", ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///",
                                          "-b", "dc=stack,dc=local", "*", "modifyTimestamp"])
    second = stack.playbook("tests/integration/bootstrap/converge.yml")
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()
    assert stack.store_snapshot() == secrets_before
    assert stack.exec("openldap", ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///",
                                   "-b", "dc=stack,dc=local", "*", "modifyTimestamp"]) == ldap_before
