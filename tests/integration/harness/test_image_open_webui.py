"""Self-test of the harness's Open WebUI image (tests/images/open-webui).

Starts the real server (generated WEBUI_SECRET_KEY, OPENAI_API_BASE_URL pointing at the fake OpenAI endpoint of
fake_openai.py, run in a container on the same network) and checks over real connections from the host: /health,
/api/config, the container's HEALTHCHECK and user, that the slim install really has no torch, and a full path a
user takes: the first sign-up becomes the admin, the fake's model is listed, and a chat completion comes back with
the fake's deterministic answer. A second test proves the image refuses to start without a secret key.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import requests

import fake_openai
from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("open-webui")
BASE_IMAGE = "datamancy-test/debian:bookworm"
PORT = 8080
OPEN_WEBUI_UID = 10002  # the image's non-root user
PINS = Path(__file__).resolve().parents[3] / "requirements" / "images.env"
PINNED_VERSION = dict(
    line.split("=", 1) for line in PINS.read_text().splitlines() if "=" in line and not line.startswith("#")
)["OPEN_WEBUI_VERSION"]
# First start runs the database migrations: measured at about 30-60 s on 2 cores; leave room for a busy host.
START_TIMEOUT = 300


@pytest.fixture
def fake_upstream(harness_network, run_container):
    """The fake OpenAI endpoint, reachable as fake-openai; yields (container, its API key)."""
    upstream_key = secrets.token_hex(16)
    fake = run_container(
        BASE_IMAGE, "fake-openai",
        command=fake_openai.container_command(),
        environment={"FAKE_OPENAI_API_KEY": upstream_key},
    )
    fake_url = f"http://{container_ip(fake, harness_network.name)}:{fake_openai.PORT}"
    wait_until(lambda: requests.get(f"{fake_url}/health", timeout=2).ok, timeout=30, what="fake OpenAI /health")
    return fake, upstream_key


@pytest.fixture
def open_webui(docker_client, harness_network, fake_upstream):
    """A started Open WebUI wired to the fake endpoint; yields (container, base URL, start-up seconds)."""
    _unused, upstream_key = fake_upstream
    container = docker_client.containers.run(
        IMAGE,
        name=f"open-webui-{RUN_ID}-{secrets.token_hex(3)}",
        hostname="open-webui",
        detach=True,
        environment={
            "WEBUI_SECRET_KEY": secrets.token_hex(32),
            "OPENAI_API_BASE_URL": f"http://fake-openai:{fake_openai.PORT}/v1",
            "OPENAI_API_KEY": upstream_key,
            # Nothing listens on Ollama's default address here; do not let the model list wait for it.
            "ENABLE_OLLAMA_API": "false",
        },
        labels=TEST_LABEL,
        network=harness_network.name,
    )
    started = time.monotonic()
    try:
        base_url = f"http://{container_ip(container, harness_network.name)}:{PORT}"

        def healthy():
            container.reload()
            if container.status == "exited":
                raise AssertionError(f"open-webui exited:\n{container.logs().decode(errors='replace')[-5000:]}")
            return requests.get(f"{base_url}/health", timeout=3).status_code == 200

        wait_until(healthy, timeout=START_TIMEOUT, interval=1, what="open-webui /health")
        yield container, base_url, time.monotonic() - started
    finally:
        container.remove(force=True, v=True)


@pytest.mark.integration
def test_health_config_healthcheck_and_user(open_webui):
    container, base_url, startup_seconds = open_webui
    print(f"open-webui answered /health {startup_seconds:.0f} s after start")

    health = requests.get(f"{base_url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": True}

    config = requests.get(f"{base_url}/api/config", timeout=10)
    assert config.status_code == 200
    body = config.json()
    assert body["status"] is True
    assert body["version"] == PINNED_VERSION
    assert body["features"]["auth"] is True
    assert body.get("onboarding") is True, "a fresh data volume must offer the first-admin sign-up"

    # The bundled web front end is served too, not only the API.
    index = requests.get(f"{base_url}/", timeout=10)
    assert index.status_code == 200 and "<title>Open WebUI" in index.text

    def docker_says_healthy():
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(docker_says_healthy, timeout=60, what="Docker health status 'healthy'")
    assert container.exec_run(["id", "-u"]).output.decode().strip() == str(OPEN_WEBUI_UID), \
        "open-webui must not run as root"
    # The data lands in the declared volume, and the slim install really carries no torch.
    assert container.exec_run(["test", "-s", "/app/backend/data/webui.db"]).exit_code == 0
    no_torch = container.exec_run(["python3", "-c", "import importlib.util as u; print(u.find_spec('torch'))"])
    assert no_torch.output.decode().strip() == "None"


@pytest.mark.integration
def test_admin_sign_up_models_and_chat_through_the_fake(open_webui, fake_upstream):
    _unused, base_url, _unused = open_webui
    password = secrets.token_urlsafe(18) + "aA1!"
    signup = requests.post(
        f"{base_url}/api/v1/auths/signup",
        json={"name": "Harness Admin", "email": "admin@example.test", "password": password},
        timeout=30,
    )
    assert signup.status_code == 200, signup.text
    account = signup.json()
    assert account["role"] == "admin", "the first account on a fresh instance must be the admin"
    auth = {"Authorization": f"Bearer {account['token']}"}

    assert requests.get(f"{base_url}/api/models", timeout=10).status_code == 401
    models = requests.get(f"{base_url}/api/models", headers=auth, timeout=30)
    assert models.status_code == 200, models.text
    assert fake_openai.FAKE_MODEL in [model["id"] for model in models.json()["data"]]

    prompt = f"hello {secrets.token_hex(4)}"
    chat = requests.post(
        f"{base_url}/api/chat/completions",
        json={"model": fake_openai.FAKE_MODEL, "messages": [{"role": "user", "content": prompt}], "stream": False},
        headers=auth,
        timeout=60,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == fake_openai.reply_for(prompt)

    wrong_login = requests.post(
        f"{base_url}/api/v1/auths/signin",
        json={"email": "admin@example.test", "password": password + "x"},
        timeout=30,
    )
    assert wrong_login.status_code in (400, 401, 403), wrong_login.text


@pytest.mark.integration
def test_refuses_to_start_without_secret_key(docker_client):
    # No key is baked into the image; with none given, serve wants to write a generated one into /app/backend,
    # which the non-root user cannot, so the process stops instead of running with an unmanaged key.
    container = docker_client.containers.run(
        IMAGE, detach=True, labels=TEST_LABEL, network_disabled=True,
        name=f"open-webui-nokey-{RUN_ID}-{secrets.token_hex(3)}",
    )
    try:
        result = container.wait(timeout=120)
        logs = container.logs().decode(errors="replace")
        assert result["StatusCode"] != 0, logs
        assert "PermissionError" in logs and ".webui_secret_key" in logs, logs
    finally:
        container.remove(force=True, v=True)
