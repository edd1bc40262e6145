"""A person's first hour on the README's deployment, in Chromium, in the order people live it.

The administrator opens LAM, meets the portal's login form, signs in, registers TOTP through the portal (the
one-time code from the notifier's mail, the key shown as text) and reaches LAM; there creates a user with a password
and puts her into `users`, through LAM's pages. That user signs in to Open WebUI through the portal (OIDC, consent),
asks a question and reads the answer LiteLLM streamed back from the model; a program asks the same through
api.litellm with the OpenAI client. The UIs for administrators refuse her with a page that says so. The
administrator reaches LiteLLM's UI and KFuncDB's, and calls a tool there from the browser, which a page on another
vhost cannot make the same browser do. Signing out at the portal sends every UI back to the login form,
Open WebUI included.

The tests share the people's browsers and run in this order; each later one needs what the earlier ones did.
"""
from __future__ import annotations

import hashlib
import secrets
import subprocess
import time

import httpx2
import openai
import pytest

from stacklib import resolve_for_every_client

from .people import Person

pytestmark = pytest.mark.integration

GROUPS_DN = "ou=groups,dc=stack,dc=local"
USERS_DN = "ou=users,dc=stack,dc=local"
QUESTION = "Which door do I knock on to reach the models?"
ADMIN_ONLY_UIS = ("lam", "litellm", "kfuncdb", "localai")


def standin_answer(question: str) -> str:
    """What the LocalAI stand-in answers (tests/images/localai-standin): the real model is not on this machine."""
    return "stand-in answer: " + hashlib.sha256(question.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def people(readme):
    """Who signs in and what they remember between the tests: the journeys' administrator (the generated initial
    password the README says an administrator finds in the store), and the user the administrator creates in LAM
    with a password the administrator chose."""
    return {"admin": {"uid": readme.admin, "password": readme.secret(f"ldap_user_{readme.admin}_password")},
            "new_user": {"uid": readme.lam_user, "password": "Lam-" + secrets.token_urlsafe(18)}}


def person(browsers, people, role) -> Person:
    """The same person (and browser) from test to test: the authenticator and its last used code travel along."""
    who = Person(browsers(role), people[role]["uid"], people[role]["password"])
    who.role = role
    who.totp_secret, who.last_code = people[role].get("totp"), people[role].get("last")
    return who


def remember(people, who: Person) -> None:
    people[who.role].update(totp=who.totp_secret, last=who.last_code)


def test_the_admin_signs_in_registers_totp_and_reaches_lam(readme, browsers, people):
    admin = person(browsers, people, "admin")
    browser = admin.browser
    admin.meets_the_login_form(browser.url("lam"))
    admin.signs_in()
    with browser.step("the portal asks for a second factor"):
        browser.wait_text("requires two-factor authentication", 60)
    admin.registers_totp(readme.notifications)
    remember(people, admin)
    with browser.step("opens LAM again"):
        browser.open(browser.url("lam"))
    admin.passes_totp()
    remember(people, admin)
    admin.signs_in_to_lam(readme.secret("ldap_admin_password"))
    assert f"{readme.admin}@stack.localhost" in browser.body()


def test_the_admin_creates_a_user_in_group_users_through_lam(readme, browsers, people, ldap_entry):
    admin = person(browsers, people, "admin")
    new_user = people["new_user"]
    dn = f"uid={new_user['uid']},{USERS_DN}"
    admin.creates_a_user_in_lam(new_user["uid"], "Lam", "Made", f"{new_user['uid']}@stack.localhost",
                                new_user["password"])
    admin.adds_to_group_in_lam(dn, "users", GROUPS_DN)
    # What the directory holds now (read over ldapi as slapd's root, not through LAM).
    assert ldap_entry(dn)["mail"] == [f"{new_user['uid']}@stack.localhost"]
    assert dn in ldap_entry(f"cn=users,{GROUPS_DN}")["member"]


def test_the_new_user_signs_in_to_open_webui_and_reads_the_streamed_answer(browsers, people):
    user = person(browsers, people, "new_user")
    browser = user.browser
    user.meets_the_login_form(browser.url("open-webui"))
    user.signs_in()
    user.signs_in_to_open_webui()
    with browser.step("Open WebUI offers LiteLLM's chat model"):
        browser.wait_text("chat", 60)
    # Who Open WebUI thinks she is (its own API, as the page asks it): the portal's name and mail, role user.
    me = browser.driver.execute_async_script(
        "const done = arguments[0];"
        "fetch('/api/v1/auths/', {headers: {Authorization: 'Bearer ' + localStorage.token}})"
        ".then(r => r.json()).then(done, e => done({error: String(e)}));")
    assert (me.get("name"), me.get("email"), me.get("role")) == (
        "Lam Made", f"{people['new_user']['uid']}@stack.localhost", "user"), me
    user.chats(QUESTION)
    with browser.step("the answer comes back"):
        browser.wait_text(standin_answer(QUESTION), 90)
    assert browser.driver.current_url.startswith(browser.url("open-webui", "/c/"))


def test_a_program_asks_litellms_api_with_the_openai_client(readme):
    """What a developer does after the chat works: the OpenAI client against api.litellm (the machine API: Caddy's
    allowlist and LiteLLM's key, no SSO), with the key an operator takes from the store, streaming and not."""
    question = f"{QUESTION} ({readme.run})"
    with resolve_for_every_client(readme.domain), httpx2.Client(verify=str(readme.root_ca), trust_env=False,
                                                                timeout=120) as http_client:
        client = openai.OpenAI(base_url=f"https://api.litellm.{readme.domain}/v1", http_client=http_client,
                               api_key=readme.secret("litellm_master_key"), max_retries=0)
        assert {"chat", "embed-small"} <= {model.id for model in client.models.list()}
        answer = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": question}])
        assert answer.choices[0].message.content == standin_answer(question)
        chunks = list(client.chat.completions.create(model="chat", stream=True,
                                                     messages=[{"role": "user", "content": question}]))
        assert len(chunks) > 1, "one chunk is not a stream"
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == \
            standin_answer(question)


def test_the_user_is_refused_on_the_administrators_uis_with_a_page_that_says_so(browsers, people):
    user = person(browsers, people, "new_user")
    browser = user.browser
    for host in ADMIN_ONLY_UIS:
        with browser.step(f"opens {host}"):
            browser.open(browser.url(host))
            browser.wait_text("Access refused", 60)
        assert browser.status() == 403, host
        assert "not in a group that may open this application" in browser.body()
        # The way out: the portal's sign-out, to come back as someone else.
        link = browser.wait("#portal-sign-out").get_attribute("href")
        assert link == browser.url("auth", "/logout"), link


def test_the_admin_reaches_litellms_ui_and_kfuncdbs_ui(browsers, people):
    admin = person(browsers, people, "admin")
    browser = admin.browser
    with browser.step("opens LiteLLM's admin UI"):
        browser.open(browser.url("litellm", "/ui/"))
        browser.wait_text("Access your LiteLLM Admin UI", 60)
    assert browser.driver.current_url.startswith(browser.url("litellm", "/ui/"))
    with browser.step("opens LiteLLM's API reference"):
        browser.open(browser.url("litellm"))
        browser.wait_text("LiteLLM API", 60)
    with browser.step("opens KFuncDB"):
        browser.open(browser.url("kfuncdb"))
        browser.wait_text("KFuncDB: tools and capability policy", 60)
    body = browser.body()
    assert f"Signed in as {admin.username}." in body
    # The embedded inventory's policy, and a tool it leaves out shown as refused.
    assert "Capabilities this host grants (KFUNCDB_ALLOW_CAPS): host.docker.inspect, host.shell.read." in body
    assert "docker_container_logs" in body and "refused: needs host.ssh.exec" in body


# fetch() in the page, as a script of that page would call it: resolves with the status (0: opaque) and the text.
FETCH = """
const [url, type, body, mode, done] = arguments;
fetch(url, {method: "POST", headers: {"Content-Type": type}, body: body, mode: mode, credentials: "include"})
  .then(r => r.text().then(t => done({status: r.status, text: t})))
  .catch(e => done({status: -1, text: String(e)}));
"""


def test_the_admins_browser_calls_a_tool_and_a_sibling_sites_page_cannot(browsers, people):
    """KFuncDB runs what the signed-in administrator's own browser asks for there (Caddy adds KFuncDB's key after
    SSO, and KFuncDB logs the call with the administrator's name), but not what a page on another vhost of the
    platform makes the same browser send: a text/plain POST needs no CORS preflight, so only KFuncDB itself can
    refuse it."""
    admin = person(browsers, people, "admin")
    browser = admin.browser
    mark = secrets.token_hex(4)
    since = int(time.time()) - 1
    with browser.step("calls host_info from KFuncDB's origin"):
        browser.open(browser.url("kfuncdb", "/tools"))
        browser.wait_text("host_info", 60)
        own = browser.driver.execute_async_script(FETCH, f"/call-tool?journey={mark}-own", "application/json",
                                                  '{"name": "host_info", "args": {"command": "kernel"}}',
                                                  "same-origin")
    assert own["status"] == 200 and "Linux" in own["text"], own
    with browser.step("a page on the LiteLLM vhost posts text/plain to KFuncDB"):
        browser.open(browser.url("litellm"))
        browser.wait_text("LiteLLM API", 60)
        browser.driver.execute_async_script(FETCH, browser.url("kfuncdb", f"/call-tool?journey={mark}-cross"),
                                            "text/plain", '{"name": "docker_list_containers", "args": {}}',
                                            "no-cors")
    logs = subprocess.run(["docker", "logs", "--since", str(since), "kfuncdb"], capture_output=True, text=True,
                          check=True)
    log = logs.stdout + logs.stderr
    assert f"tool host_info called by {admin.username}: ok in" in log, log[-3000:]
    assert "tool docker_list_containers called by" not in log, log[-3000:]
    # Reached KFuncDB (the cookie went along) and was refused there, or never got past Caddy: nothing ran.
    cross = [line for line in log.splitlines() if f"journey={mark}-cross" in line]
    assert all('" 415 ' in line or '" 403 ' in line for line in cross), cross


@pytest.mark.parametrize("role", ["new_user", "admin"])
def test_signing_out_at_the_portal_sends_every_ui_back_to_the_login_form(browsers, people, role):
    who = person(browsers, people, role)
    browser = who.browser
    who.signs_out_at_the_portal()
    for host in ("open-webui", *ADMIN_ONLY_UIS):
        with browser.step(f"opens {host} after signing out"):
            browser.open(browser.url(host))
            browser.wait("#username-textfield", 60)
        assert browser.driver.current_url.startswith(browser.url("auth")), (host, browser.driver.current_url)
