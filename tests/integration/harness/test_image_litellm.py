"""Self-test of the harness's LiteLLM proxy image (tests/images/litellm).

Starts the real proxy with a config file routing one model to the fake OpenAI endpoint (fake_openai.py, run in a
container on the same network) and a generated master key, then checks over real connections from the host: the
liveliness endpoint, the container's HEALTHCHECK and user, a chat completion that really reaches the fake (its
deterministic answer comes back), and that requests without the master key are refused and never reach the
upstream.

Without a database (the harness has none: using one needs `prisma generate`, which downloads Prisma engines these
machines cannot reach) LiteLLM 1.106.2 answers a missing key with 401, but any other key than the master key with
400 ``no_db_connection``: it would look virtual keys up in the database (user_api_key_auth.py). The test pins that
real behaviour instead of pretending it is a 401.
"""
from __future__ import annotations

import io
import secrets
import tarfile
import time

import pytest
import requests

import fake_openai
from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

IMAGE = local_image("litellm")
BASE_IMAGE = "datamancy-test/debian:bookworm"
PORT = 4000
LITELLM_UID = 10001  # the image's non-root user
MODEL_ALIAS = "fake-gpt"

# Secrets come from the environment (LiteLLM's os.environ/ references), never from the file.
CONFIG = f"""\
model_list:
  - model_name: {MODEL_ALIAS}
    litellm_params:
      model: openai/{fake_openai.FAKE_MODEL}
      api_base: http://fake-openai:{fake_openai.PORT}/v1
      api_key: os.environ/FAKE_OPENAI_API_KEY
litellm_settings:
  drop_params: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def _config_archive() -> bytes:
    """config.yaml as a tar for put_archive into /app (readable by the image's user, no bind mount)."""
    payload = CONFIG.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("config.yaml")
        info.size, info.mode, info.uid, info.gid, info.mtime = len(payload), 0o400, LITELLM_UID, LITELLM_UID, time.time()
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.fixture
def litellm(docker_client, harness_network, run_container):
    """A started proxy in front of the fake endpoint; yields (container, base URL, master key, fake container)."""
    upstream_key = secrets.token_hex(16)
    master_key = "sk-" + secrets.token_hex(32)
    fake = run_container(
        BASE_IMAGE, "fake-openai",
        command=fake_openai.container_command(),
        environment={"FAKE_OPENAI_API_KEY": upstream_key},
    )
    fake_url = f"http://{container_ip(fake, harness_network.name)}:{fake_openai.PORT}"
    wait_until(lambda: requests.get(f"{fake_url}/health", timeout=2).ok, timeout=30, what="fake OpenAI /health")

    # Created, given its config through the API, then started: LiteLLM reads the config once, at start.
    container = docker_client.containers.create(
        IMAGE,
        name=f"litellm-{RUN_ID}-{secrets.token_hex(3)}",
        hostname="litellm",
        environment={"LITELLM_MASTER_KEY": master_key, "FAKE_OPENAI_API_KEY": upstream_key},
        labels=TEST_LABEL,
        network=harness_network.name,
    )
    try:
        container.put_archive("/app", _config_archive())
        container.start()
        base_url = f"http://{container_ip(container, harness_network.name)}:{PORT}"

        def alive():
            container.reload()
            if container.status == "exited":
                raise AssertionError(f"litellm exited:\n{container.logs().decode(errors='replace')}")
            return requests.get(f"{base_url}/health/liveliness", timeout=3).status_code == 200

        wait_until(alive, timeout=120, what="litellm /health/liveliness")
        yield container, base_url, master_key, fake
    finally:
        container.remove(force=True, v=True)


def _chat(base_url: str, key: str | None, prompt: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.post(
        f"{base_url}/v1/chat/completions",
        json={"model": MODEL_ALIAS, "messages": [{"role": "user", "content": prompt}]},
        headers=headers,
        timeout=60,
    )


@pytest.mark.integration
def test_liveliness_healthcheck_and_user(litellm):
    container, base_url, _unused, _unused = litellm
    response = requests.get(f"{base_url}/health/liveliness", timeout=5)
    assert response.status_code == 200
    assert "alive" in response.text.lower()

    def docker_says_healthy():
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(docker_says_healthy, timeout=90, what="Docker health status 'healthy'")
    assert container.exec_run(["id", "-u"]).output.decode().strip() == str(LITELLM_UID), "litellm must not run as root"
    # The cost map is the one shipped in the wheel: nothing may try to download it.
    assert container.exec_run(["printenv", "LITELLM_LOCAL_MODEL_COST_MAP"]).output.decode().strip() == "True"


@pytest.mark.integration
def test_chat_completion_through_the_proxy(litellm):
    _unused, base_url, master_key, _unused = litellm
    prompt = f"ping {secrets.token_hex(4)}"
    response = _chat(base_url, master_key, prompt)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == fake_openai.reply_for(prompt)

    # The proxy lists exactly the configured alias to an authenticated client.
    models = requests.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {master_key}"}, timeout=10)
    assert models.status_code == 200, models.text
    assert [model["id"] for model in models.json()["data"]] == [MODEL_ALIAS]


def _upstream_chat_requests(fake) -> int:
    """How many chat completions reached the fake (it logs one line per request)."""
    return fake.logs(stdout=False, stderr=True).decode(errors="replace").count('"POST /v1/chat/completions')


@pytest.mark.integration
def test_missing_or_wrong_key_is_refused(litellm):
    _unused, base_url, master_key, fake = litellm
    before = _upstream_chat_requests(fake)

    no_key = _chat(base_url, None, "no key")
    assert no_key.status_code == 401, no_key.text
    assert requests.get(f"{base_url}/v1/models", timeout=10).status_code == 401

    # Wrong keys, including one a single character off the master key: refused as a key LiteLLM cannot verify
    # without a database (see the module docstring), never served.
    for wrong_key in ("sk-" + secrets.token_hex(32), master_key[:-1], "not-an-sk-key"):
        response = _chat(base_url, wrong_key, "wrong key")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "no_db_connection"

    assert _upstream_chat_requests(fake) == before, "a request without the master key reached the upstream"
    # The master key still works afterwards: the refusals were about the keys, not a broken proxy.
    assert _chat(base_url, master_key, "after").status_code == 200
    assert _upstream_chat_requests(fake) == before + 1
