"""playbooks/rotate_secrets.yml against the shared full-mode deployment: rotating Authelia's session secret logs a
real session out and restarts Authelia only; rotating KFuncDB's key restarts KFuncDB and the Caddy that sends it;
rotating the OIDC keys and Open WebUI's client secret keeps sessions and the previous key published, and Open
WebUI's login works after it; never-rotate and unknown secrets are refused before any change."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from stacklib import StackDeployment

from .platform_checks import authelia_healthy, login

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "open_webui"))
from owui_helpers import Browser, via_caddy_container  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration


def started(stack: StackDeployment) -> dict[str, str]:
    return {c.name.removeprefix(stack.prefix): c.attrs["State"]["StartedAt"] for c in stack.containers()}


def reported(output: str, key: str) -> list[str]:
    """A list from the playbook's final report (the debug task's JSON)."""
    match = re.search(rf'"{key}": (\[[^\]]*\])', output)
    assert match, f"no {key} in the report"
    return json.loads(match.group(1))


def authenticated(stack: StackDeployment, session) -> bool:
    """Does Authelia still know the session? Asked of its API and of a forward-auth'd vhost through Caddy."""
    info = session.get(stack.url("auth", "/api/user/info"), timeout=10)
    vhost = session.get(stack.url("litellm", "/"), allow_redirects=False, timeout=30)
    # Caddy's forward_auth sends an unauthenticated browser to the portal (its port is the public one, not ours).
    redirected_to_login = vhost.status_code == 401 or (
        vhost.status_code in (302, 303, 307) and vhost.headers.get("Location", "").startswith(f"https://auth.{stack.domain}"))
    if info.status_code == 200:
        assert info.json()["data"]["display_name"] == "Carol User"
        assert not redirected_to_login, (vhost.status_code, vhost.headers)
        return True
    assert info.status_code in (401, 403), info.text
    assert redirected_to_login, (vhost.status_code, vhost.headers)
    return False


def test_rotating_the_session_secret_logs_users_out(full_stack):
    session = login(full_stack)
    assert session is not None
    assert authenticated(full_stack, session)
    old_value = full_stack.read_secret("authelia_session_secret")
    before = started(full_stack)

    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=["authelia_session_secret"])

    assert run.returncode == 0, run.output[-4000:]
    assert full_stack.read_secret("authelia_session_secret") != old_value
    # The held cookie no longer authenticates, Authelia is healthy and a fresh login works.
    assert not authenticated(full_stack, session)
    assert authelia_healthy(full_stack)
    session = login(full_stack)
    assert session is not None and authenticated(full_stack, session)
    # Authelia alone was restarted; every other container kept running.
    after = started(full_stack)
    assert after["authelia"] != before["authelia"]
    assert {k: v for k, v in after.items() if k != "authelia"} == {k: v for k, v in before.items() if k != "authelia"}
    assert reported(run.output, "restarted") == ["authelia"]
    assert reported(run.output, "rotated") == ["authelia_session_secret"]


def test_a_never_rotate_secret_is_refused(full_stack):
    store = full_stack.store_snapshot()
    before = started(full_stack)

    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=["authelia_storage_encryption_key"])

    assert run.returncode != 0
    assert "Refused, nothing was changed: authelia_storage_encryption_key never rotates" in run.output
    assert "rotate_force=true" in run.output
    assert full_stack.store_snapshot() == store
    assert started(full_stack) == before


def test_unknown_secrets_and_rotate_all_with_names_are_refused(full_stack):
    store = full_stack.store_snapshot()
    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=["no_such_secret"])
    assert run.returncode != 0
    assert "Nothing was changed" in run.output and "no_such_secret" in run.output
    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=["redis_password"], rotate_all=True)
    assert run.returncode != 0 and "not both" in run.output
    assert full_stack.store_snapshot() == store


KFUNCDB_TOOLS = """
import json, sys, urllib.request, urllib.error
codes = []
for key in sys.argv[1:]:
    request = urllib.request.Request("http://kfuncdb:8081/tools", headers={"Authorization": "Bearer " + key})
    try:
        codes.append(urllib.request.urlopen(request, timeout=10).status)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
print(json.dumps(codes))
"""


def kfuncdb_answers(stack: StackDeployment, *keys: str) -> list[int]:
    code = KFUNCDB_TOOLS.replace("sys.argv[1:]", json.dumps(list(keys)))
    status, output = stack.probe("backend", code)
    assert status == 0, output
    return json.loads(output.strip().splitlines()[-1])


def test_rotating_kfuncdbs_key_restarts_kfuncdb_and_the_caddy_that_sends_it(full_stack):
    """An upstream key has two readers: the service that checks it and Caddy, which sends it. Both restart with
    the new value; the old one opens nothing."""
    old = full_stack.read_secret("kfuncdb_api_key").strip()
    before = started(full_stack)

    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=["kfuncdb_api_key"])

    assert run.returncode == 0, run.output[-4000:]
    new = full_stack.read_secret("kfuncdb_api_key").strip()
    assert new != old
    assert sorted(reported(run.output, "restarted")) == ["caddy", "kfuncdb"]
    after = started(full_stack)
    assert after["caddy"] != before["caddy"] and after["kfuncdb"] != before["kfuncdb"]
    assert {k: v for k, v in after.items() if k not in ("caddy", "kfuncdb")} == {
        k: v for k, v in before.items() if k not in ("caddy", "kfuncdb")}
    assert kfuncdb_answers(full_stack, old, new) == [401, 200]
    # What Caddy sends: its process holds the new key (compared here, never printed).
    code, environ = full_stack.exec("caddy", ["cat", "/proc/1/environ"])
    assert code == 0
    holds_new = f"DATAMANCY_UPSTREAM_KEY_KFUNCDB_API_KEY={new}" in environ.split("\0")
    holds_old = old in environ
    assert holds_new and not holds_old, "Caddy does not send the rotated key"
    assert "DATAMANCY_UPSTREAM_KEY_KFUNCDB_API_KEY" not in json.dumps(full_stack.container("caddy").attrs["Config"]["Env"])


OIDC_SECRETS = ["authelia_oidc_hmac_secret", "authelia_oidc_issuer_key", "oidc_open_webui_client_secret"]


def published_kids(browser: Browser) -> list[str]:
    """The key ids Authelia publishes, found the way a relying party finds them (discovery, then jwks_uri)."""
    discovery = browser.session.get(browser.url("auth", "/.well-known/openid-configuration"), timeout=30)
    assert discovery.status_code == 200, discovery.text
    jwks = browser.session.get(discovery.json()["jwks_uri"], timeout=30)
    assert jwks.status_code == 200, jwks.text
    return [key["kid"] for key in jwks.json()["keys"]]


def test_rotating_the_oidc_keys_keeps_sessions_and_open_webuis_login_works(full_stack):
    """The issuer key, the HMAC secret and Open WebUI's client secret: Authelia (which signs with the keys and checks
    the secret's digest) and Open WebUI (which sends the secret) restart, nothing else. The previous issuer key stays
    published beside the new one, so tokens it signed still verify; the SSO session and Open WebUI's own session
    from before hold; and a new Open WebUI login, with the new secret and key, works."""
    old = {name: full_stack.read_secret(name) for name in OIDC_SECRETS}
    with via_caddy_container(full_stack):
        browser = Browser(full_stack)
        browser.first_factor("carol", browser.url("open-webui"))
        token_before = browser.oidc_login()
        kids_before = published_kids(browser)
    before = started(full_stack)

    run = full_stack.playbook("playbooks/rotate_secrets.yml", rotate_secrets=OIDC_SECRETS)

    assert run.returncode == 0, run.output[-4000:]
    assert all(full_stack.read_secret(name) != value for name, value in old.items())
    assert sorted(reported(run.output, "rotated")) == sorted(OIDC_SECRETS)
    assert reported(run.output, "rederived") == ["oidc_open_webui_client_secret_digest"]
    assert sorted(reported(run.output, "restarted")) == ["authelia", "open-webui"]
    after = started(full_stack)
    assert {k: v for k, v in after.items() if k not in ("authelia", "open-webui")} == {
        k: v for k, v in before.items() if k not in ("authelia", "open-webui")}
    # Authelia runs the new key ring: the new key first (it signs), the previous one still published.
    ring = json.loads(full_stack.read_secret("authelia_oidc_keyring"))
    assert sorted(key["kid"] for key in ring["keys"][1:]) == sorted(kids_before)
    handed = sorted(p.name for p in (full_stack.base_dir / "authelia" / "secrets").glob("authelia_oidc_issuer_key*"))
    assert handed == ["authelia_oidc_issuer_key"] + [
        f"authelia_oidc_issuer_key_previous_{n}" for n in range(1, len(kids_before) + 1)]
    assert authelia_healthy(full_stack)
    with via_caddy_container(full_stack):
        # The JWKS lists every key of the ring (in an order of Authelia's); the configuration names the new key
        # first, which makes it the one Authelia signs with.
        kids_after = published_kids(browser)
        assert sorted(kids_after) == sorted([ring["keys"][0]["kid"]] + kids_before)
        configuration = (full_stack.base_dir / "authelia" / "config" / "configuration.yml").read_text()
        assert re.findall(r'key_id: "([^"]+)"', configuration) == [key["kid"] for key in ring["keys"]]
        # The SSO session (Redis) and Open WebUI's own token (its never-rotated key) both outlive the rotation.
        assert browser.session.get(browser.url("auth", "/api/user/info"), timeout=30).status_code == 200
        headers = {"Accept": "application/json", "Authorization": f"Bearer {token_before}"}
        me = browser.session.get(browser.url("open-webui", "/api/v1/auths/"), headers=headers, timeout=60)
        assert me.status_code == 200 and me.json()["email"] == "carol@example.test", me.text
        # A new sign-in: Open WebUI sends the new client secret and verifies an ID token signed by the new key.
        browser.hops.clear()
        token_after = browser.oidc_login()
        headers["Authorization"] = f"Bearer {token_after}"
        me = browser.session.get(browser.url("open-webui", "/api/v1/auths/"), headers=headers, timeout=60)
        assert me.status_code == 200 and me.json()["email"] == "carol@example.test", me.text
    # Converging again changes nothing: the previous key is inside its overlap (a day by default).
    again = full_stack.playbook("site.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.changed_tasks()
