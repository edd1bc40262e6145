"""Self-test of the harness's Authelia image (tests/images/authelia) on the authelia role's real configuration.

A small playbook (authelia_converge.yml) deploys OpenLDAP, Redis, Authelia and Caddy with the collection's roles
into an isolated, prefixed deployment, so the configuration Authelia starts on is the one the role renders for
users. From outside, like a browser: the portal serves Authelia's real web app (its HTML and the scripts it
references), a protected vhost sends a browser to the portal, a first-factor login through the portal's API
opens it over Caddy's forward_auth, and a wrong password is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stacklib import REPO_ROOT, StackDeployment, json_or_none, resolve_to_loopback

HERE = Path(__file__).resolve().parent
AUTHELIA_UID = 8000  # the image's non-root user
USER = "carol"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
VARS = {
    "stack_services_custom": {
        "whoami": {"mode": "bootstrap", "networks": ["frontend"],
                   "vhosts": [{"host": "whoami", "upstream": "whoami:8080"}]},
    },
    "openldap_users": [
        {"uid": USER, "given_name": "Carol", "surname": "User", "mail": f"{USER}@example.test", "groups": ["users"]},
    ],
}


def pinned_version() -> str:
    """AUTHELIA_VERSION from requirements/images.env: what the image must report."""
    for line in (REPO_ROOT / "requirements" / "images.env").read_text().splitlines():
        if line.startswith("AUTHELIA_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("requirements/images.env has no AUTHELIA_VERSION")


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(extra_vars=VARS)
    try:
        run = deployment.playbook(str(HERE / "authelia_converge.yml"))
        assert run.returncode == 0, run.output[-6000:]
        with resolve_to_loopback(deployment.domain):
            yield deployment
    finally:
        deployment.destroy()


def first_factor(stack: StackDeployment, password: str, target: str):
    session = stack.session()
    response = session.post(stack.url("auth", "/api/firstfactor"), json={
        "username": USER, "password": password, "keepMeLoggedIn": False, "targetURL": target})
    return session, response


@pytest.mark.integration
def test_the_image_runs_the_pinned_release_unprivileged_and_healthy(stack):
    container = stack.container("authelia")
    assert container.attrs["State"]["Health"]["Status"] == "healthy"
    code, uid = stack.exec("authelia", ["id", "-u"])
    assert code == 0 and uid.strip() == str(AUTHELIA_UID), "authelia must not run as root"
    code, version = stack.exec("authelia", ["authelia", "--version"])
    assert code == 0 and pinned_version() in version, version


@pytest.mark.integration
def test_it_runs_on_the_configuration_the_role_renders(stack):
    rendered = yaml.safe_load((stack.base_dir / "authelia" / "config" / "configuration.yml").read_text())
    assert rendered["server"]["address"] == "tcp://0.0.0.0:9091/"
    assert rendered["server"]["endpoints"]["authz"]["forward-auth"]["implementation"] == "ForwardAuth"
    assert rendered["session"]["cookies"][0]["authelia_url"] == f"https://auth.{stack.domain}"
    assert rendered["authentication_backend"]["ldap"]["address"].startswith("ldap://")
    # Authelia's own validation of the files the container was started with, secrets included.
    code, output = stack.exec("authelia", ["authelia", "config", "validate", "--config", "/config/configuration.yml",
                                           "--config", "/config/extension.yml"])
    assert code == 0, output
    assert "Configuration parsed and loaded successfully without errors" in output, output


@pytest.mark.integration
def test_the_portal_serves_its_web_app(stack):
    session = stack.session()
    page = session.get(stack.url("auth", "/"), headers=BROWSER)
    assert page.status_code == 200, page.status_code
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<div id="root">' in page.text, page.text[:500]
    scripts = re.findall(r'<script[^>]+src="([^"]+\.js)"', page.text)
    assert scripts, f"the portal references no script: {page.text[:800]}"
    for src in scripts:
        asset = session.get(stack.url("auth", "/" + src.removeprefix("./").lstrip("/")))
        assert asset.status_code == 200, (src, asset.status_code)
        assert "javascript" in asset.headers["Content-Type"], (src, asset.headers["Content-Type"])
        assert len(asset.content) > 10_000, (src, len(asset.content))


@pytest.mark.integration
def test_a_browser_is_sent_to_the_portal_and_a_login_opens_the_vhost(stack):
    target = stack.url("whoami")
    response = stack.session().get(target, headers=BROWSER, allow_redirects=False)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"].startswith(f"https://auth.{stack.domain}/"), response.headers

    session, login = first_factor(stack, stack.read_secret(f"ldap_user_{USER}_password"), target)
    assert login.status_code == 200, login.text
    assert json_or_none(login)["status"] == "OK"
    cookie = next(c for c in session.cookies if c.name == "authelia_session")
    assert cookie.domain.lstrip(".") == stack.domain and cookie.secure

    seen = session.get(target)
    assert seen.status_code == 200, seen.text
    assert seen.json()["headers"]["Remote-User"] == USER
    assert seen.json()["headers"]["Remote-Groups"] == "users"


@pytest.mark.integration
def test_a_wrong_password_is_refused(stack):
    session, login = first_factor(stack, "not-" + stack.read_secret(f"ldap_user_{USER}_password"), stack.url("whoami"))
    assert login.status_code == 401
    assert json_or_none(login)["status"] == "KO"
    assert session.get(stack.url("whoami"), headers=BROWSER, allow_redirects=False).status_code == 302
