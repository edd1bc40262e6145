"""Full mode's AI services behind the machine-API pattern, deployed for real and checked from outside.

The core (Caddy, Authelia, LDAP, Redis) plus LocalAI and LiteLLM. LocalAI is the harness's STAND-IN
(tests/images/localai-standin, NOT LocalAI): it answers ``stand-in answer: <first 12 hex of sha256(last user
message)>``, so an exact answer proves the request went Caddy -> LiteLLM -> LocalAI and back.

Where a client's address comes from, as Caddy's ``remote_ip`` sees it: the engine runs without Docker's userland
proxy (as docker_host configures hosts), so a connection from the host to the published 127.0.0.1:<port> is NATed
to Caddy and masqueraded: it arrives from the gateway address of Caddy's network (the ``frontend`` bridge's
x.x.x.1), never from 127.0.0.1, while a client elsewhere would keep its own address. The local inventory admits
172.16.0.0/12 for this machine's own programs (with its reason). The tests therefore (1) show the host is allowed
under that allowlist, (2) narrow the allowlist to exactly that gateway /32 and show the host still gets through
while a container on the same network, whose own address is outside, gets 403.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests
import yaml

from stacklib import StackDeployment, json_or_none, resolve_to_loopback

HERE = Path(__file__).resolve().parent
CONVERGE = "tests/integration/ai_api/converge.yml"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API_CLIENT = {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}
PROMPT = "Which model answers this, and through which gateway?"
EXPECTED_ANSWER = f"stand-in answer: {hashlib.sha256(PROMPT.encode()).hexdigest()[:12]}"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": PROMPT}]}


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(extra_vars=yaml.safe_load((HERE / "vars.yml").read_text()))
    try:
        first = deployment.playbook(CONVERGE)
        assert first.returncode == 0, first.output[-6000:]
        with resolve_to_loopback(deployment.domain):
            yield deployment
    finally:
        deployment.destroy()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def standin_chat_requests(stack: StackDeployment) -> int:
    """How many chat completions reached the LocalAI stand-in (it logs one line per request, never headers)."""
    return stack.container("localai").logs().decode(errors="replace").count('"POST /v1/chat/completions')


# A client inside the frontend network: its own bridge address is the source Caddy sees (no proxy in between).
PROBE = """
import json, socket, ssl
context = ssl.create_default_context(cadata={ca!r})
raw = socket.create_connection(("caddy", 443), timeout=20)
conn = context.wrap_socket(raw, server_hostname={host!r})
body = json.dumps({body!r})
conn.sendall(("POST /v1/chat/completions HTTP/1.1\\r\\nHost: {host}\\r\\nAuthorization: Bearer {key}\\r\\n"
              "Content-Type: application/json\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s"
              % (len(body), body)).encode())
data = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
"""


def chat_from_frontend_container(stack: StackDeployment) -> str:
    code, output = stack.probe("frontend", PROBE.format(
        ca=stack.caddy_root_ca().read_text(), host=f"api.litellm.{stack.domain}", body=CHAT,
        key=stack.read_secret("litellm_master_key")), timeout=60)
    assert code == 0, output
    return output


def frontend_gateway(stack: StackDeployment) -> str:
    network = stack.docker.networks.get(stack.network("frontend"))
    return network.attrs["IPAM"]["Config"][0]["Gateway"]


def test_a_chat_through_the_machine_api_reaches_localai_and_returns_its_answer(stack):
    response = stack.session().post(stack.url("api.litellm", "/v1/chat/completions"), json=CHAT,
                                    headers=bearer(stack.read_secret("litellm_master_key")), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == EXPECTED_ANSWER


def test_embeddings_route_to_localai_too(stack):
    response = stack.session().post(stack.url("api.litellm", "/v1/embeddings"),
                                    json={"model": "embed-small", "input": "vector me"},
                                    headers=bearer(stack.read_secret("litellm_master_key")), timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384


def test_under_the_default_allowlist_a_container_on_a_private_network_is_let_through(stack):
    # Control for the 403 test below: the same probe, under the local inventory's allowlist, succeeds.
    output = chat_from_frontend_container(stack)
    assert output.startswith("HTTP/1.1 200"), output[:500]
    assert EXPECTED_ANSWER in output


def test_without_a_key_the_machine_api_answers_401(stack):
    before = standin_chat_requests(stack)
    response = stack.session().post(stack.url("api.litellm", "/v1/chat/completions"), json=CHAT, timeout=60)
    assert response.status_code == 401, response.text
    assert standin_chat_requests(stack) == before


def test_a_wrong_key_is_refused_and_never_reaches_localai(stack):
    before = standin_chat_requests(stack)
    response = stack.session().post(stack.url("api.litellm", "/v1/chat/completions"), json=CHAT,
                                    headers=bearer("sk-" + "0" * 64), timeout=60)
    # LiteLLM without a database cannot look up virtual keys: it refuses any key but the master key with
    # 400 no_db_connection (a database-backed proxy answers 401). Either way: refused, nothing forwarded.
    assert response.status_code in (400, 401), response.text
    assert "error" in (json_or_none(response) or {}), response.text
    assert EXPECTED_ANSWER not in response.text
    assert standin_chat_requests(stack) == before


@pytest.mark.parametrize("host", ["litellm", "localai"])
def test_the_ui_vhosts_need_an_sso_session(stack, host):
    response = stack.session().get(stack.url(host), headers=BROWSER, allow_redirects=False)
    assert response.status_code == 302, (host, response.status_code)
    assert response.headers["Location"].startswith(f"https://auth.{stack.domain}/"), response.headers
    response = stack.session().get(stack.url(host, "/v1/models"), headers=API_CLIENT, allow_redirects=False)
    assert response.status_code == 401, (host, response.status_code)
    # Even the right API key does not open the SSO vhost: the key is for the api.* hostname.
    response = stack.session().get(stack.url(host, "/v1/models"),
                                   headers={**API_CLIENT, **bearer(stack.read_secret("litellm_master_key"))},
                                   allow_redirects=False)
    assert response.status_code == 401


def client_cert(stack: StackDeployment) -> tuple[str, str]:
    clients = stack.base_dir / "caddy" / "client-ca" / "clients"
    return str(clients / "ai-api-test.crt"), str(clients / "ai-api-test.key")


def test_localais_own_machine_api_needs_a_client_certificate_and_localais_key(stack):
    url = stack.url("api.localai", "/v1/models")
    # mTLS: without a certificate from the generated client CA the handshake is refused, key or not.
    with pytest.raises(requests.exceptions.RequestException):
        stack.session().get(url, headers=bearer(stack.read_secret("localai_api_key")), timeout=30)
    session = stack.session()
    session.cert = client_cert(stack)
    assert session.get(url, timeout=30).status_code == 401
    assert session.get(url, headers=bearer(stack.read_secret("litellm_master_key")), timeout=30).status_code == 401
    response = session.get(url, headers=bearer(stack.read_secret("localai_api_key")), timeout=30)
    assert response.status_code == 200, response.text
    assert sorted(model["id"] for model in response.json()["data"]) == ["local-chat", "local-embed"]


def test_the_client_ca_and_the_issued_key_stay_root_only(stack):
    ca_dir = stack.base_dir / "caddy" / "client-ca"
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    for path in (ca_dir / "ca.key", Path(client_cert(stack)[1])):
        assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == 0, path
    # Caddy gets the CA certificate only, never its key.
    assert "PRIVATE KEY" not in (stack.base_dir / "caddy" / "etc" / "client-ca.crt").read_text()
    assert "BEGIN CERTIFICATE" in (stack.base_dir / "caddy" / "etc" / "client-ca.crt").read_text()


def test_the_declared_models_are_localai_definitions_in_the_models_volume(stack):
    code, output = stack.exec("localai", ["cat", "/models/local-chat.yaml"])
    assert code == 0, output
    definition = yaml.safe_load(output)
    assert definition["name"] == "local-chat"
    assert definition["parameters"] == {"model": "local-chat.Q4_K_M.gguf"}


def test_keys_reach_the_processes_as_files_never_through_the_container_configuration(stack):
    """No key in `docker inspect`; each is a file only the container's user reads, loaded into the process's
    environment by the start wrapper (the upstreams read these keys from their environment only)."""
    handed = {"litellm": ("LITELLM_MASTER_KEY", "litellm_master_key", 10001),
              "localai": ("LOCALAI_API_KEY", "localai_api_key", 1000)}
    for service, (variable, secret, uid) in handed.items():
        attrs = stack.container(service).attrs
        value = stack.read_secret(secret)
        assert value not in json.dumps(attrs["Config"]), f"{secret} is in the configuration of {service}"
        assert attrs["Config"]["Entrypoint"][:2] == ["/bin/sh", "-c"]
        path = stack.base_dir / service / "secret-env" / variable
        assert path.read_text() == value
        assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o400, uid)
        assert not (stack.base_dir / service / f"{service}.env").exists()
        code, environ = stack.exec(service, ["cat", "/proc/1/environ"])
        assert code == 0 and f"{variable}={value}" in environ.split("\0"), service
    config = (stack.base_dir / "litellm" / "config" / "config.yaml").read_text()
    for secret in ("litellm_master_key", "litellm_salt_key", "localai_api_key"):
        assert stack.read_secret(secret) not in config
    parsed = yaml.safe_load(config)
    assert parsed["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert {m["litellm_params"]["api_base"] for m in parsed["model_list"]} == {"http://localai:8080/v1"}
    assert stack.read_secret("litellm_master_key").startswith("sk-")
    env = stack.container("litellm").attrs["Config"]["Env"]
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in env


def test_localai_and_litellm_are_reachable_only_through_caddy(stack):
    publishing = {c.name for c in stack.containers() if c.attrs["HostConfig"].get("PortBindings")}
    assert publishing == {f"{stack.prefix}caddy"}
    for service in ("localai", "litellm"):
        attrs = stack.container(service).attrs
        assert not attrs["NetworkSettings"]["Ports"] or all(v is None for v in attrs["NetworkSettings"]["Ports"].values())
        assert set(attrs["NetworkSettings"]["Networks"]) == {stack.network("frontend"), stack.network("backend")}
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
        assert attrs["State"]["Health"]["Status"] == "healthy"


def test_a_second_run_changes_nothing(stack):
    secrets_before = stack.store_snapshot()
    second = stack.playbook(CONVERGE)
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()
    assert stack.store_snapshot() == secrets_before


def test_outside_the_allowlist_caddy_answers_403(stack, monkeypatch):
    gateway = frontend_gateway(stack)
    monkeypatch.setenv("API_LITELLM_ALLOWLIST", f"{gateway}/32")
    narrowed = stack.playbook(CONVERGE)
    assert narrowed.returncode == 0, narrowed.output[-4000:]
    caddyfile = (stack.base_dir / "caddy" / "etc" / "Caddyfile").read_text()
    assert f"not remote_ip {gateway}/32\n" in caddyfile
    # The host's connection arrives NATed from the gateway, which is exactly what is allowed.
    response = stack.session().post(stack.url("api.litellm", "/v1/chat/completions"), json=CHAT,
                                    headers=bearer(stack.read_secret("litellm_master_key")), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == EXPECTED_ANSWER
    # A container on the same network comes from its own address, outside the allowlist: refused by Caddy,
    # with the right key, before LiteLLM sees it.
    before = standin_chat_requests(stack)
    output = chat_from_frontend_container(stack)
    assert output.startswith("HTTP/1.1 403"), output[:500]
    assert EXPECTED_ANSWER not in output
    assert standin_chat_requests(stack) == before


def test_an_invalid_cidr_fails_the_play_before_any_change(stack, monkeypatch):
    def state():
        return {c.name: (c.id, c.attrs["State"]["StartedAt"]) for c in stack.containers()}

    containers_before = state()
    caddyfile = stack.base_dir / "caddy" / "etc" / "Caddyfile"
    caddyfile_before = caddyfile.read_text()
    monkeypatch.setenv("API_LITELLM_ALLOWLIST", "10.0.0.0/8 192.168.1.300/24")
    run = stack.playbook(CONVERGE)
    assert run.returncode != 0
    assert run.changed == 0, run.changed_tasks()
    assert "invalid CIDR(s) in allowlist: 192.168.1.300/24" in run.output
    assert state() == containers_before
    assert caddyfile.read_text() == caddyfile_before
