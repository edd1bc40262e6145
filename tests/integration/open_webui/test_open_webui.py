"""Open WebUI deployed for real on the bootstrap core, checked the way a user's browser and the API client see it:
login through Authelia OIDC (LDAP groups -> Open WebUI roles), a chat that goes Open WebUI -> LiteLLM -> the
LocalAI stand-in and back, hardening, idempotence, and data that outlives the container.

The host talks to Caddy at its container address on port 443 (resolve_to), the address containers use too: with
Caddy's random published test port in browser URLs, the issuer the browser sees would differ from the one Open WebUI
fetches inside the network."""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from urllib.parse import urlsplit
from pathlib import Path

import pytest
import requests
import yaml

from owui_helpers import STANDIN_MODEL, Browser, container_ip, resolve_to, start_llm_standins, wait_until
from stacklib import StackDeployment, json_or_none

HERE = Path(__file__).resolve().parent
CONVERGE = "tests/integration/open_webui/converge.yml"
API_CLIENT = {"Accept": "application/json"}
# The account the role has Open WebUI create at its first start, so that no person is its first account.
BOOTSTRAP_ACCOUNT = "bootstrap-admin@open-webui.invalid"


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(extra_vars=yaml.safe_load((HERE / "vars.yml").read_text()))
    try:
        started = time.monotonic()
        first = deployment.playbook(CONVERGE)
        deployment.converge_seconds = time.monotonic() - started
        assert first.returncode == 0, first.output[-6000:]
        print(f"first converge: {deployment.converge_seconds:.0f} s")
        start_llm_standins(deployment, localai_key=secrets.token_hex(16))
        deployment.tokens = {}
        deployment.browsers = {}
        caddy_ip = container_ip(deployment.container("caddy"), deployment.network("frontend"))
        with resolve_to(deployment.domain, caddy_ip):
            yield deployment
    finally:
        deployment.destroy()


def api(stack: StackDeployment, user: str, method: str, path: str, **kwargs):
    """Open WebUI's API with the user's Open WebUI token, through Caddy (the user's Authelia session passes
    forward_auth)."""
    browser = stack.browsers[user]
    headers = {**API_CLIENT, "Authorization": f"Bearer {stack.tokens[user]}"}
    return browser.session.request(method, browser.url("open-webui", path), headers=headers, timeout=120, **kwargs)


def test_only_caddy_publishes_ports_and_open_webui_runs_hardened_against_litellm(stack):
    publishing = {c.name for c in stack.containers() if c.attrs["HostConfig"].get("PortBindings")}
    assert publishing == {f"{stack.prefix}caddy"}
    container = stack.container("open-webui")
    host_config = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10002:10002"
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host_config["SecurityOpt"]
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {stack.network("frontend"), stack.network("backend")}
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["OPENAI_API_BASE_URL"] == "http://litellm:4000/v1"
    assert not [key for key, value in env.items() if "localai" in value], "Open WebUI must never talk to LocalAI"
    assert env["ENABLE_PERSISTENT_CONFIG"] == "False" and env["ENABLE_SIGNUP"] == "False"
    # Its secrets are files the start wrapper loads into the process, never in the container's configuration.
    for variable, secret in (("WEBUI_SECRET_KEY", "open_webui_secret_key"), ("OPENAI_API_KEY", "litellm_master_key"),
                             ("OAUTH_CLIENT_SECRET", "oidc_open_webui_client_secret"),
                             ("WEBUI_ADMIN_PASSWORD", "open_webui_bootstrap_admin_password")):
        assert variable not in env
        assert stack.read_secret(secret) not in json.dumps(container.attrs["Config"]), secret
        handed = stack.base_dir / "open-webui" / "secret-env" / variable
        assert (handed.stat().st_mode & 0o777, handed.stat().st_uid) == (0o400, 10002)
        code, environ = stack.exec("open-webui", ["cat", "/proc/1/environ"])
        assert code == 0 and f"{variable}={stack.read_secret(secret)}" in environ.split("\0")
    assert not (stack.base_dir / "open-webui" / "open-webui.env").exists()
    # The data lives in the registry's bind directory, owned by the container user.
    assert (stack.base_dir / "open-webui" / "data" / "webui.db").stat().st_uid == 10002


def test_the_portal_lives_where_the_registry_names_it(stack):
    """The suite renames the registry's authelia vhost (vars.yml: sso): a browser without a session is sent there,
    Authelia's OIDC issuer is that name, and the default name is no site at all. The logins below go through it."""
    assert stack.portal_host == "sso"
    portal = f"https://sso.{stack.domain}"
    browser = Browser(stack)
    response = browser.session.get(browser.url("open-webui"), allow_redirects=False, timeout=30,
                                   headers={"Accept": "text/html"})
    assert response.status_code == 302 and response.headers["Location"].startswith(f"{portal}/?rd="), response.headers
    discovery = browser.session.get(f"{portal}/.well-known/openid-configuration", timeout=30)
    assert discovery.status_code == 200 and discovery.json()["issuer"] == portal, discovery.text
    with pytest.raises(requests.exceptions.SSLError):
        browser.session.get(f"https://auth.{stack.domain}/", timeout=10)
    caddyfile = (stack.base_dir / "caddy" / "etc" / "Caddyfile").read_text()
    assert f"auth.{stack.domain}" not in caddyfile and f"sso.{stack.domain}" in caddyfile


def test_a_plain_user_signs_in_first_and_is_a_user(stack):
    """bob (users) is the first person to sign in. Open WebUI makes its first account admin whatever its groups;
    that account is the bootstrap one the role had it create, so bob's groups decide: he is a user."""
    browser = Browser(stack)
    stack.browsers["bob"] = browser
    browser.first_factor("bob", browser.url("open-webui"))
    stack.tokens["bob"] = browser.oidc_login()
    me = api(stack, "bob", "GET", "/api/v1/auths/")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "bob@example.test"
    assert me.json()["role"] == "user"
    # A user is not an admin in Open WebUI: the admin-only user list is refused.
    assert api(stack, "bob", "GET", "/api/v1/users/").status_code in (401, 403)
    # Nobody signs in as the bootstrap account, with its very password either: password sign-in is off.
    bootstrap = api(stack, "bob", "POST", "/api/v1/auths/signin", json={
        "email": BOOTSTRAP_ACCOUNT, "password": stack.read_secret("open_webui_bootstrap_admin_password")})
    assert bootstrap.status_code == 403, bootstrap.text
    # Login is SSO only: the password form and sign-up are off, and a password sign-in is refused.
    config = api(stack, "bob", "GET", "/api/config").json()
    assert config["features"]["enable_login_form"] is False
    assert config["features"]["enable_signup"] is False
    assert config["oauth"]["providers"] == {"oidc": "Authelia"}
    signin = api(stack, "bob", "POST", "/api/v1/auths/signin", json={"email": "bob@example.test", "password": "x"})
    assert signin.status_code == 403


def test_an_openwebui_admin_logs_in_through_authelia_oidc_and_is_admin(stack):
    """alice (admins, openwebui-admin) logs in first: one factor, TOTP (forward_auth asks admins for it on every
    protected vhost), then Open WebUI's OIDC login."""
    browser = Browser(stack)
    stack.browsers["alice"] = browser
    target = browser.url("open-webui")
    browser.first_factor("alice", target)
    browser.register_and_pass_totp(target)
    stack.tokens["alice"] = browser.oidc_login()
    # The code went back to Authelia through Caddy from inside the network; the hops show the real flow.
    portal = f"https://{stack.portal_host}.{stack.domain}"
    assert any(hop.startswith(f"{portal}/api/oidc/authorization") for hop in browser.hops)
    me = api(stack, "alice", "GET", "/api/v1/auths/")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "alice@example.test"
    assert me.json()["role"] == "admin"


def test_an_openwebui_admin_without_totp_does_not_become_an_admin(stack):
    """dave is in openwebui-admin but not in admins, so forward_auth lets him onto the vhost with one factor; the
    OIDC client's policy does not: his sign-in stops at the portal until he passes TOTP, and only then is he
    Open WebUI's admin."""
    browser = Browser(stack)
    stack.browsers["dave"] = browser
    browser.first_factor("dave", browser.url("open-webui"))
    landing = browser.follow(browser.url("open-webui", "/oauth/oidc/login"))
    assert not any(urlsplit(hop).path == "/oauth/oidc/callback" for hop in browser.hops), browser.hops
    assert urlsplit(browser.hops[-1]).hostname == f"{stack.portal_host}.{stack.domain}", browser.hops
    assert landing.status_code == 200
    assert not browser.session.cookies.get("token", domain=f"open-webui.{stack.domain}")
    info = browser.session.get(browser.url(stack.portal_host, "/api/user/info"), timeout=10).json()["data"]
    assert info["display_name"] == "Dave Owui"

    browser.hops.clear()
    browser.register_and_pass_totp(browser.url("open-webui"))
    stack.tokens["dave"] = browser.oidc_login()
    me = api(stack, "dave", "GET", "/api/v1/auths/")
    assert me.status_code == 200 and me.json()["role"] == "admin", me.text


def test_a_chat_goes_through_litellm_to_the_localai_standin(stack):
    models = api(stack, "alice", "GET", "/api/models")
    assert models.status_code == 200, models.text
    assert STANDIN_MODEL in [model["id"] for model in models.json()["data"]]
    prompt = f"hello from open webui {secrets.token_hex(4)}"
    chat = api(stack, "alice", "POST", "/api/chat/completions", json={
        "model": STANDIN_MODEL, "messages": [{"role": "user", "content": prompt}], "stream": False})
    assert chat.status_code == 200, chat.text
    # The stand-in's deterministic answer: it really went Open WebUI -> LiteLLM -> LocalAI stand-in.
    expected = f"stand-in answer: {hashlib.sha256(prompt.encode()).hexdigest()[:12]}"
    assert chat.json()["choices"][0]["message"]["content"] == expected
    # Kept for the persistence check: a saved chat with that exchange.
    saved = api(stack, "alice", "POST", "/api/v1/chats/new", json={"chat": {
        "title": "persistence check", "models": [STANDIN_MODEL],
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": expected}]}})
    assert saved.status_code == 200, saved.text
    stack.saved_chat_id = saved.json()["id"]


def test_a_second_run_changes_nothing(stack):
    secrets_before = stack.store_snapshot()
    second = stack.playbook(CONVERGE)
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()
    assert stack.store_snapshot() == secrets_before


def test_the_data_and_the_sessions_survive_a_new_container(stack):
    """A new container (same data directory, same never-rotated secret key): accounts, roles and chats are still
    there, and the token Open WebUI signed before is still valid."""
    old_id = stack.container("open-webui").id
    stack.container("open-webui").remove(force=True)
    third = stack.playbook(CONVERGE)
    assert third.returncode == 0, third.output[-4000:]
    assert stack.container("open-webui").id != old_id
    wait_until(lambda: api(stack, "alice", "GET", "/api/v1/auths/").status_code == 200, 120, "Open WebUI via Caddy")
    assert api(stack, "alice", "GET", "/api/v1/auths/").json()["role"] == "admin"
    chat = api(stack, "alice", "GET", f"/api/v1/chats/{stack.saved_chat_id}")
    assert chat.status_code == 200, chat.text
    assert chat.json()["chat"]["title"] == "persistence check"
    users = api(stack, "alice", "GET", "/api/v1/users/")
    assert users.status_code == 200, users.text
    body = json_or_none(users)
    listed = body["users"] if isinstance(body, dict) else body
    assert {u["email"]: u["role"] for u in listed} == {
        "alice@example.test": "admin", "bob@example.test": "user", "dave@example.test": "admin",
        BOOTSTRAP_ACCOUNT: "admin"}
