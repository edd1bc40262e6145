"""Modes on the day-2 package's shared full deployment (made with -e stack_mode=full, inventories/local otherwise):

- full mode answers out of the box: a chat through api.litellm with the OpenAI client (streaming and not) and one
  through Open WebUI's API as a signed-in user, on inventories/local's model declarations only;
- the deployed mode is state on the host: day-2 playbooks run without -e stack_mode take it, a contradicting one
  is refused before anything changes;
- switches through site.yml serve: after each of full -> bootstrap -> full -> bootstrap -> full every vhost of the
  mode completes a TLS handshake with a certificate for its name and answers, Caddy's live hosts equal the
  Caddyfile's, and the data of LDAP, Open WebUI, LAM, Qdrant and ClickHouse outlives the switches.

The module leaves the deployment in full mode, recorded, converged (a last re-run changes nothing).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest
import yaml

from stacklib import (ANSIBLE_PLAYBOOK, REPO_ROOT, PlaybookRun, StackDeployment, clickhouse, http, qdrant,
                      resolve_for_every_client)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "open_webui"))
from owui_helpers import Browser, via_caddy_container  # noqa: E402  pylint: disable=wrong-import-position

MARK = secrets.token_hex(4)
ERIN_DN = f"uid=erin-{MARK},ou=users,dc=stack,dc=local"
# LiteLLM's default routes (roles/litellm/defaults): what a client asks for, whatever LocalAI calls the model.
CHAT = "chat"
FULL_ONLY_HOSTS = {"open-webui", "litellm", "api.litellm", "localai", "kfuncdb"}
FULL_ONLY = {"localai", "litellm", "open-webui", "qdrant", "clickhouse", "kfuncdb", "docker-proxy"}
CORE = {"caddy", "authelia", "openldap", "redis", "lam", "backup"}


@pytest.fixture(name="stack", scope="module")
def stack_fixture(full_stack):
    return full_stack


def expected_answer(prompt: str) -> str:
    """The LocalAI stand-in's deterministic answer: proof the request went all the way to it."""
    return f"stand-in answer: {hashlib.sha256(prompt.encode()).hexdigest()[:12]}"


# --- helpers ---------------------------------------------------------------------------------------------------

def playbook_without_mode(stack: StackDeployment, playbook: str, *args: str, timeout: int = 1200) -> PlaybookRun:
    """The deployment's variables without stack_mode: what an operator types without -e stack_mode (the
    inventory's own stack_mode: bootstrap still applies)."""
    data = {key: value for key, value in stack.vars.items() if key != "stack_mode"}
    vars_file = stack.workdir / "vars-without-mode.yml"
    vars_file.write_text(yaml.safe_dump(data))
    command = [ANSIBLE_PLAYBOOK, "-i", "inventories/local/hosts.yml", playbook, "-e", f"@{vars_file}", *args]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, errors="replace",
                               timeout=timeout, check=False)
    completed.stdout += completed.stderr
    return PlaybookRun(completed)


def recorded_mode(stack: StackDeployment) -> str | None:
    path = stack.base_dir / "stack_mode.json"
    return json.loads(path.read_text())["stack_mode"] if path.exists() else None


def container_states(stack: StackDeployment) -> dict[str, tuple[str, str]]:
    return {c.name: (c.id, c.attrs["State"]["StartedAt"]) for c in stack.containers()}


def caddyfile_hosts(stack: StackDeployment) -> set[str]:
    text = (stack.base_dir / "caddy" / "etc" / "Caddyfile").read_text()
    return set(re.findall(rf"^(\S+\.{re.escape(stack.domain)}) {{$", text, re.MULTILINE))


def live_hosts(stack: StackDeployment) -> set[str]:
    """Every host a route of Caddy's running configuration matches, from its admin API."""
    code, output = stack.exec("caddy", ["wget", "-q", "-O", "-", "http://127.0.0.1:2019/config/apps/http/servers"])
    assert code == 0, output
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "host" and isinstance(value, list):
                    found.update(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(output))
    return found


def handshake(stack: StackDeployment, fqdn: str) -> list[str]:
    """TLS to Caddy's published port with the vhost's SNI, verified against Caddy's root CA and the name."""
    context = ssl.create_default_context(cafile=str(stack.caddy_root_ca()))
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=fqdn) as tls:
            return [name for kind, name in tls.getpeercert()["subjectAltName"] if kind == "DNS"]


def assert_every_vhost_serves(stack: StackDeployment, mode: str) -> None:
    hosts = caddyfile_hosts(stack)
    names = {fqdn.removesuffix("." + stack.domain) for fqdn in hosts}
    assert "auth" in names and "lam" in names, names
    if mode == "full":
        assert FULL_ONLY_HOSTS <= names, names
    else:
        assert not FULL_ONLY_HOSTS & names, names
    assert live_hosts(stack) == hosts
    session = stack.session()
    for fqdn in sorted(hosts):
        # Certificates for new names come from Caddy's internal CA right after the reload: a few seconds at most.
        deadline, last = time.monotonic() + 60, None
        while True:
            try:
                assert fqdn in handshake(stack, fqdn)
                break
            except (ssl.SSLError, OSError) as error:
                last = error
                if time.monotonic() > deadline:
                    raise AssertionError(f"{mode}: no TLS handshake for {fqdn}: {last!r}") from error
                time.sleep(2)
        response = session.get(f"https://{fqdn}:{stack.https_port}/", allow_redirects=False, timeout=30)
        name = fqdn.removesuffix("." + stack.domain)
        if name == "auth":
            assert response.status_code == 200, (fqdn, response.status_code)
        elif name.startswith("api."):
            # The upstream itself answers (no SSO on a machine API): never Caddy's 502 or Authelia.
            assert response.status_code < 500 and "location" not in response.headers, (fqdn, response.status_code)
        else:
            assert response.status_code in (302, 303), (fqdn, response.status_code)
            assert response.headers["location"].startswith(f"https://auth.{stack.domain}"), response.headers


def lam_config_digest(stack: StackDeployment) -> str:
    code, output = stack.exec("lam", ["sh", "-c", "cd /var/lib/ldap-account-manager/config && "
                                      "find . -type f | sort | xargs sha256sum"])
    assert code == 0 and output.strip(), output
    return output


def owui_rows(stack: StackDeployment, sql: str, *params) -> list:
    code = ("import json, sqlite3, sys; c = sqlite3.connect('file:/app/backend/data/webui.db?mode=ro', uri=True, "
            "timeout=60); print(json.dumps(c.execute(sys.argv[1], json.loads(sys.argv[2])).fetchall()))")
    exit_code, output = stack.exec("open-webui", ["python3", "-c", code, sql, json.dumps(list(params))])
    assert exit_code == 0, output
    return json.loads(output.strip().splitlines()[-1])


# --- 5: full mode answers out of the box -----------------------------------------------------------------------

def test_litellm_answers_the_openai_client_on_the_default_routes(stack):
    key = stack.read_secret("litellm_master_key").strip()
    prompt = f"hello through api.litellm {MARK}"
    with resolve_for_every_client(stack.domain), \
            httpx2.Client(verify=str(stack.caddy_root_ca()), trust_env=False, timeout=120) as http_client:
        client = openai.OpenAI(base_url=stack.url("api.litellm", "/v1"), api_key=key, http_client=http_client,
                               max_retries=0)
        assert CHAT in [model.id for model in client.models.list()]
        answer = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": prompt}])
        assert answer.choices[0].message.content == expected_answer(prompt)
        chunks = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": prompt}],
                                                stream=True)
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert streamed == expected_answer(prompt)


def test_open_webui_answers_a_signed_in_user(stack, kept):
    """carol (users) signs in through Authelia OIDC and chats through Open WebUI's API on its default model."""
    with via_caddy_container(stack):
        browser = Browser(stack)
        browser.first_factor("carol", browser.url("open-webui"))
        token = browser.oidc_login()
        headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}

        def api(method, path, **kwargs):
            return browser.session.request(method, browser.url("open-webui", path), headers=headers, timeout=120,
                                           **kwargs)

        models = api("GET", "/api/models")
        assert models.status_code == 200, models.text
        assert CHAT in [model["id"] for model in models.json()["data"]]
        prompt = f"hello through open webui {MARK}"
        chat = api("POST", "/api/chat/completions", json={
            "model": CHAT, "messages": [{"role": "user", "content": prompt}], "stream": False})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] == expected_answer(prompt)
        saved = api("POST", "/api/v1/chats/new", json={"chat": {
            "title": f"modes {MARK}", "models": [CHAT],
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": expected_answer(prompt)}]}})
        assert saved.status_code == 200, saved.text
        kept["chat_id"] = saved.json()["id"]


@pytest.fixture(name="kept", scope="module")
def kept_fixture():
    """What the first tests leave for the switch test to find again."""
    return {}


# --- 4: the deployed mode is state on the host -----------------------------------------------------------------

def test_day2_playbooks_take_the_deployed_mode(stack):
    assert recorded_mode(stack) == "full"
    backup = playbook_without_mode(stack, "playbooks/backup.yml")
    assert backup.returncode == 0, backup.output[-6000:]
    last = json.loads((stack.base_dir / "backup" / "status" / "last-run.json").read_text())
    assert last["ok"] is True, last
    assert {"open-webui", "qdrant", "clickhouse", "openldap", "authelia", "lam", "caddy"} <= set(last["services"])
    audit = playbook_without_mode(stack, "playbooks/audit.yml")
    assert audit.returncode == 0, audit.output[-6000:]
    assert recorded_mode(stack) == "full"


@pytest.mark.parametrize("playbook", ["playbooks/backup.yml", "playbooks/update.yml"])
def test_a_contradicting_stack_mode_is_refused_before_anything_changes(stack, playbook):
    before = container_states(stack)
    run = stack.playbook(playbook, stack_mode="bootstrap")
    assert run.returncode != 0
    message = re.sub(r"\s+", " ", run.output)
    assert "runs in full mode" in message and "stack_mode=bootstrap" in message, run.output[-3000:]
    assert "site.yml -e stack_mode=bootstrap" in message
    assert run.changed == 0, run.changed_tasks()
    assert container_states(stack) == before
    assert recorded_mode(stack) == "full"


# --- 3: mode switches that serve -------------------------------------------------------------------------------

def test_mode_switches_serve_and_keep_the_data(stack, kept):
    ldif = (f"dn: {ERIN_DN}\nobjectClass: inetOrgPerson\nuid: erin-{MARK}\ncn: Erin {MARK}\nsn: Modes\n"
            "mail: erin@example.test\n")
    code, output = stack.exec("openldap", ["sh", "-c", f"printf '{ldif}' | ldapadd -Q -Y EXTERNAL -H ldapi:///"])
    assert code == 0, output
    lam_before = lam_config_digest(stack)
    key = stack.read_secret("qdrant_api_key").strip()
    admin = stack.read_secret("clickhouse_admin_password").strip()
    point = {"points": [{"id": 4242, "vector": [0.5] * 384, "payload": {"kept": MARK}}]}
    stored, inserted = http(stack, "database", qdrant("/collections/documents/points?wait=true", key, "PUT", point),
                            clickhouse(f"INSERT INTO datamancy.series_values VALUES ('modes-{MARK}', "
                                       "'2026-11-23 10:00:00', 7.5)", "admin", admin))
    assert stored["status"] == 200 and inserted["status"] == 200, (stored, inserted)
    volumes_before = {v.name for v in stack.docker.volumes.list() if v.name.startswith(stack.vars["stack_volume_prefix"])}
    secrets_before = stack.store_snapshot()

    stale = ""  # Caddy's live configuration in bootstrap mode, for the drift check below
    for step, mode in enumerate(("bootstrap", "full", "bootstrap", "full")):
        run = stack.playbook("site.yml", stack_mode=mode)
        assert run.returncode == 0, f"switch {step} to {mode}:\n{run.output[-6000:]}"
        assert recorded_mode(stack) == mode
        running = {c.name.removeprefix(stack.prefix) for c in stack.containers() if c.status == "running"}
        assert CORE <= running and (FULL_ONLY <= running if mode == "full" else not FULL_ONLY & running), running
        assert_every_vhost_serves(stack, mode)
        code, output = stack.exec("openldap", ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///",
                                               "-b", ERIN_DN, "-s", "base", "dn"])
        assert code == 0 and ERIN_DN in output, (mode, output)
        assert lam_config_digest(stack) == lam_before, mode
        if mode == "bootstrap":
            stale = stack.exec("caddy", ["wget", "-q", "-O", "-", "http://127.0.0.1:2019/config/"])[1]

    # Caddy serving a configuration other than the rendered one (the bootstrap one here, as after a reload that was
    # skipped) is healed by the next converge, although no task changes a file or the container.
    code, output = stack.exec("caddy", [
        "sh", "-c", 'printf "%s" "$1" > /tmp/stale.json && wget -q -O - --header "Content-Type: application/json" '
        "--post-file /tmp/stale.json http://127.0.0.1:2019/load", "sh", stale])
    assert code == 0, output
    assert live_hosts(stack) != caddyfile_hosts(stack)
    heal = stack.playbook("site.yml")
    assert heal.returncode == 0, heal.output[-6000:]
    changed = heal.changed_tasks()
    assert len(changed) == 1 and changed[0].endswith("Reload Caddy when the configuration it serves differs from "
                                                     "the rendered one"), changed
    assert_every_vhost_serves(stack, "full")

    # Converged: a re-run changes nothing.
    again = stack.playbook("site.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.changed_tasks()

    volumes_after = {v.name for v in stack.docker.volumes.list() if v.name.startswith(stack.vars["stack_volume_prefix"])}
    assert volumes_before <= volumes_after
    assert stack.store_snapshot() == secrets_before
    kept_point, kept_row = http(stack, "database", qdrant("/collections/documents/points/4242", key),
                                clickhouse(f"SELECT value FROM datamancy.series_values WHERE series_id = 'modes-{MARK}'",
                                           "admin", admin))
    assert json.loads(kept_point["body"])["result"]["payload"] == {"kept": MARK}
    assert kept_row["body"].strip() == "7.5"
    # Open WebUI's database still holds carol and her chat.
    assert owui_rows(stack, "SELECT email FROM user WHERE email = ?", "carol@example.test") == [["carol@example.test"]]
    assert "chat_id" in kept, "test_open_webui_answers_a_signed_in_user saves the chat this test looks for"
    assert owui_rows(stack, "SELECT title FROM chat WHERE id = ?", kept["chat_id"]) == [[f"modes {MARK}"]]
