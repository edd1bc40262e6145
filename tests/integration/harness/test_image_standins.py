"""Self-tests of the two STAND-IN images (tests/images/qdrant-standin, tests/images/localai-standin).

They are not Qdrant and not LocalAI (see their README.md files); these tests pin the subset of the APIs the
collection relies on: health endpoints open, everything else behind the key (401 otherwise), Qdrant-shaped
collection/point operations with deterministic search and storage that survives a restart, and OpenAI-shaped
deterministic chat answers, tool calls and embeddings.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import secrets
import tarfile

import pytest
import requests

from conftest import RUN_ID, TEST_LABEL, container_ip, local_image, wait_until

QDRANT_IMAGE = local_image("qdrant-standin")
LOCALAI_IMAGE = local_image("localai-standin")
STANDIN_UID = "1000"


def _wait_healthy(container, timeout: float = 60):
    def healthy():
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode(errors='replace')}")
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=timeout, what=f"{container.name} healthy")


def _read(container, path: str) -> bytes:
    stream, _unused = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read()


@pytest.fixture
def start(docker_client, harness_network):
    made = []

    def _start(image: str, name: str, files: dict[str, bytes] | None = None, **kwargs):
        container = docker_client.containers.create(
            image, name=f"{name}-{RUN_ID}-{secrets.token_hex(3)}", hostname=name, labels=TEST_LABEL,
            network=harness_network.name, **kwargs,
        )
        made.append(container)
        if files:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for path, content in files.items():
                    info = tarfile.TarInfo(path)
                    info.size, info.mode, info.uid, info.gid = len(content), 0o644, int(STANDIN_UID), int(STANDIN_UID)
                    tar.addfile(info, io.BytesIO(content))
            container.put_archive("/", buffer.getvalue())
        container.start()
        return container

    yield _start
    for container in made:
        container.remove(force=True, v=True)


# --- qdrant-standin ---------------------------------------------------------------------------------------

def _unit(vector):
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


@pytest.mark.integration
def test_qdrant_standin_api_auth_and_persistence(start, harness_network, docker_client):
    assert docker_client.images.get(QDRANT_IMAGE).labels["org.opencontainers.image.title"] == "qdrant-standin (NOT Qdrant)"
    key = secrets.token_urlsafe(24)
    container = start(QDRANT_IMAGE, "qdrant", environment={"QDRANT__SERVICE__API_KEY": key})
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:6333"
    auth = {"api-key": key}

    # Health endpoints are open, like Qdrant's.
    for path, text in (("/healthz", "healthz check passed"), ("/livez", "livez check passed"), ("/readyz", "all shards are ready")):
        response = requests.get(base + path, timeout=5)
        assert response.status_code == 200 and response.text == text

    # Everything else needs the key, as `api-key` or as a bearer token.
    assert requests.get(f"{base}/collections", timeout=5).status_code == 401
    assert requests.get(f"{base}/collections", headers={"api-key": key + "x"}, timeout=5).status_code == 401
    assert requests.get(f"{base}/collections", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert requests.put(f"{base}/collections/docs", json={"vectors": {"size": 4, "distance": "Cosine"}}, timeout=5).status_code == 401
    bearer = requests.get(f"{base}/collections", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    assert bearer.status_code == 200
    assert bearer.json()["status"] == "ok" and bearer.json()["result"] == {"collections": []}
    assert isinstance(bearer.json()["time"], float)

    created = requests.put(f"{base}/collections/docs", json={"vectors": {"size": 4, "distance": "Cosine"}}, headers=auth, timeout=5)
    assert created.status_code == 200 and created.json()["result"] is True
    again = requests.put(f"{base}/collections/docs", json={"vectors": {"size": 4, "distance": "Cosine"}}, headers=auth, timeout=5)
    assert again.status_code == 409 and "already exists" in again.json()["status"]["error"]

    points = [
        {"id": 1, "vector": [1, 0, 0, 0], "payload": {"source": "a", "text": "one"}},
        {"id": 2, "vector": [1, 1, 0, 0], "payload": {"source": "b", "text": "two"}},
        {"id": 3, "vector": [0, 0, 1, 0], "payload": {"source": "a", "text": "three"}},
        {"id": "3b0d8b5e-6a5e-4d8f-9c3e-2b1a0f9e8d7c", "vector": [1, 0, 0, 0], "payload": {"source": "b"}},
    ]
    upsert = requests.put(f"{base}/collections/docs/points", params={"wait": "true"}, json={"points": points}, headers=auth, timeout=5)
    assert upsert.status_code == 200 and upsert.json()["result"]["status"] == "completed"
    bad = requests.put(f"{base}/collections/docs/points", json={"points": [{"id": 9, "vector": [1, 0]}]}, headers=auth, timeout=5)
    assert bad.status_code == 400 and "dimension" in bad.json()["status"]["error"]

    info = requests.get(f"{base}/collections/docs", headers=auth, timeout=5).json()["result"]
    assert info["points_count"] == 4
    assert info["config"]["params"]["vectors"] == {"size": 4, "distance": "Cosine"}

    # Cosine search: exact scores, best first, ties (ids 1 and the UUID) broken by id; repeatable.
    query = {"vector": [2, 0.5, 0, 0], "limit": 3, "with_payload": True}
    first = requests.post(f"{base}/collections/docs/points/search", json=query, headers=auth, timeout=5).json()["result"]
    second = requests.post(f"{base}/collections/docs/points/search", json=query, headers=auth, timeout=5).json()["result"]
    assert first == second
    assert [hit["id"] for hit in first] == [1, "3b0d8b5e-6a5e-4d8f-9c3e-2b1a0f9e8d7c", 2]
    expected = sum(a * b for a, b in zip(_unit([2, 0.5, 0, 0]), _unit([1, 1, 0, 0]), strict=True))
    assert math.isclose(first[2]["score"], expected, rel_tol=1e-9)
    assert first[0]["payload"] == {"source": "a", "text": "one"}

    filtered = requests.post(
        f"{base}/collections/docs/points/search",
        json={**query, "filter": {"must": [{"key": "source", "match": {"value": "a"}}]}}, headers=auth, timeout=5,
    ).json()["result"]
    assert [hit["id"] for hit in filtered] == [1, 3]

    page = requests.post(f"{base}/collections/docs/points/scroll", json={"limit": 2}, headers=auth, timeout=5).json()["result"]
    assert [p["id"] for p in page["points"]] == [1, 2] and page["next_page_offset"] == 3
    rest = requests.post(f"{base}/collections/docs/points/scroll", json={"limit": 2, "offset": 3}, headers=auth, timeout=5).json()["result"]
    assert [p["id"] for p in rest["points"]] == [3, "3b0d8b5e-6a5e-4d8f-9c3e-2b1a0f9e8d7c"] and rest["next_page_offset"] is None

    only_b = {"filter": {"must": [{"key": "source", "match": {"value": "b"}}]}}
    count = requests.post(f"{base}/collections/docs/points/count", json=only_b, headers=auth, timeout=5)
    assert count.json()["result"] == {"count": 2}

    # Unsupported filters fail loudly instead of matching everything.
    unsupported = requests.post(f"{base}/collections/docs/points/count", json={"filter": {"must": [{"key": "n", "range": {"gt": 1}}]}}, headers=auth, timeout=5)
    assert unsupported.status_code == 400

    # Storage is JSON in the volume (what a backup copies) and survives a restart.
    stored = json.loads(_read(container, "/qdrant/storage/collections/docs.json"))
    assert stored["name"] == "docs" and len(stored["points"]) == 4
    container.restart(timeout=10)
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:6333"
    assert requests.post(f"{base}/collections/docs/points/search", json=query, headers=auth, timeout=5).json()["result"] == first

    deleted = requests.delete(f"{base}/collections/docs", headers=auth, timeout=5)
    assert deleted.status_code == 200 and deleted.json()["result"] is True
    missing = requests.get(f"{base}/collections/docs", headers=auth, timeout=5)
    assert missing.status_code == 404 and "doesn't exist" in missing.json()["status"]["error"]

    assert container.exec_run(["id", "-u"]).output.decode().strip() == STANDIN_UID


def test_qdrant_standin_snapshots_like_qdrant(start, harness_network):
    """The snapshot calls the backup role makes (Qdrant's paths and reply shapes): create, list, download, delete,
    and recovery by upload, which replaces the collection's content."""
    key = secrets.token_urlsafe(24)
    container = start(QDRANT_IMAGE, "qdrant-snap", environment={"QDRANT__SERVICE__API_KEY": key})
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:6333"
    auth = {"api-key": key}
    requests.put(f"{base}/collections/docs", json={"vectors": {"size": 2, "distance": "Dot"}}, headers=auth, timeout=5)
    points = [{"id": 1, "vector": [1, 0], "payload": {"n": 1}}, {"id": 2, "vector": [0, 1]}]
    requests.put(f"{base}/collections/docs/points?wait=true", json={"points": points}, headers=auth, timeout=5)

    assert requests.post(f"{base}/collections/docs/snapshots", timeout=5).status_code == 401
    created = requests.post(f"{base}/collections/docs/snapshots?wait=true", headers=auth, timeout=5).json()["result"]
    assert set(created) == {"name", "creation_time", "size", "checksum"} and created["name"].endswith(".snapshot")
    listed = requests.get(f"{base}/collections/docs/snapshots", headers=auth, timeout=5).json()["result"]
    assert [s["name"] for s in listed] == [created["name"]]
    download = requests.get(f"{base}/collections/docs/snapshots/{created['name']}", headers=auth, timeout=5)
    assert download.status_code == 200 and download.headers["Content-Type"] == "application/octet-stream"
    assert hashlib.sha256(download.content).hexdigest() == created["checksum"]
    assert requests.delete(f"{base}/collections/docs/snapshots/{created['name']}", headers=auth, timeout=5).json()["result"]
    assert requests.get(f"{base}/collections/docs/snapshots", headers=auth, timeout=5).json()["result"] == []

    # Recovery replaces whatever the collection holds now, and creates a missing one.
    requests.post(f"{base}/collections/docs/points/delete?wait=true", json={"points": [1, 2]}, headers=auth, timeout=5)
    for name in ("docs", "copy"):
        upload = requests.post(f"{base}/collections/{name}/snapshots/upload?priority=snapshot&wait=true", headers=auth,
                               files={"snapshot": ("docs.snapshot", download.content)}, timeout=5)
        assert upload.status_code == 200 and upload.json()["result"] is True, upload.text
        count = requests.post(f"{base}/collections/{name}/points/count", json={}, headers=auth, timeout=5)
        assert count.json()["result"] == {"count": 2}
    refused = requests.post(f"{base}/collections/docs/snapshots/upload", headers=auth,
                            files={"snapshot": ("x.snapshot", b"not a snapshot")}, timeout=5)
    assert refused.status_code == 400


# --- localai-standin --------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def localai(start, harness_network):
    key = secrets.token_urlsafe(24)
    container = start(LOCALAI_IMAGE, "localai", environment={"LOCALAI_API_KEY": key, "LOCALAI_MODELS": "chat-small,embed-small"})
    _wait_healthy(container)
    return container, f"http://{container_ip(container, harness_network.name)}:8080", {"Authorization": f"Bearer {key}"}


@pytest.mark.integration
def test_localai_standin_auth_and_models(localai, docker_client):
    assert docker_client.images.get(LOCALAI_IMAGE).labels["org.opencontainers.image.title"] == "localai-standin (NOT LocalAI)"
    container, base, auth = localai
    for path in ("/readyz", "/healthz"):
        assert requests.get(base + path, timeout=5).status_code == 200
    assert requests.get(f"{base}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base}/v1/models", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    chat_without_key = requests.post(f"{base}/v1/chat/completions", json={"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    assert chat_without_key.status_code == 401 and chat_without_key.json()["error"]["code"] == 401
    models = requests.get(f"{base}/v1/models", headers=auth, timeout=5).json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["chat-small", "embed-small"]
    unknown = requests.post(f"{base}/v1/chat/completions", json={"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}, headers=auth, timeout=5)
    assert unknown.status_code == 404
    assert container.exec_run(["id", "-u"]).output.decode().strip() == STANDIN_UID


@pytest.mark.integration
def test_localai_standin_chat_and_tool_calls(localai):
    _unused, base, auth = localai
    url = f"{base}/v1/chat/completions"

    question = "What is the answer to everything?"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": question}]
    plain = requests.post(url, json={"model": "chat-small", "messages": messages}, headers=auth, timeout=5).json()
    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": f"stand-in answer: {hashlib.sha256(question.encode()).hexdigest()[:12]}"}
    assert plain["choices"][0]["finish_reason"] == "stop"
    assert plain["usage"]["total_tokens"] == plain["usage"]["prompt_tokens"] + plain["usage"]["completion_tokens"]

    # A user message naming a tool yields an OpenAI tool call with arguments taken from the text.
    ask = {"role": "user", "content": "Please use get_weather for city=Lyon days: 3"}
    called = requests.post(url, json={"model": "chat-small", "messages": [ask], "tools": [TIME_TOOL, WEATHER_TOOL]}, headers=auth, timeout=5).json()
    choice = called["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lyon", "days": 3}
    repeat = requests.post(url, json={"model": "chat-small", "messages": [ask], "tools": [TIME_TOOL, WEATHER_TOOL]}, headers=auth, timeout=5).json()
    assert repeat["choices"][0]["message"]["tool_calls"] == [call]

    # tool_choice "none" suppresses the call; no tools means a plain answer.
    none = requests.post(url, json={"model": "chat-small", "messages": [ask], "tools": [WEATHER_TOOL], "tool_choice": "none"}, headers=auth, timeout=5).json()
    assert none["choices"][0]["message"]["content"].startswith("stand-in answer: ")

    # The tool's result comes back; the final answer contains it.
    follow_up = [ask, {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": call["id"], "content": "12 C, light rain"}]
    final = requests.post(url, json={"model": "chat-small", "messages": follow_up, "tools": [WEATHER_TOOL]}, headers=auth, timeout=5).json()
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "12 C, light rain" in final["choices"][0]["message"]["content"]

    # Streaming: server-sent events carrying the same answer, terminated by [DONE].
    streamed = requests.post(url, json={"model": "chat-small", "stream": True, "messages": [{"role": "user", "content": question}]}, headers=auth, timeout=5)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert content == plain["choices"][0]["message"]["content"]


@pytest.mark.integration
def test_localai_standin_embeddings(localai):
    _unused, base, auth = localai
    url = f"{base}/v1/embeddings"
    response = requests.post(url, json={"model": "embed-small", "input": ["alpha", "beta", "alpha"]}, headers=auth, timeout=5)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [item["index"] for item in data] == [0, 1, 2]
    vectors = [item["embedding"] for item in data]
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9) for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    single = requests.post(url, json={"model": "embed-small", "input": "alpha"}, headers=auth, timeout=5).json()["data"]
    assert single[0]["embedding"] == vectors[0]
    smaller = requests.post(url, json={"model": "embed-small", "input": "alpha", "dimensions": 16}, headers=auth, timeout=5).json()["data"]
    assert len(smaller[0]["embedding"]) == 16
    assert requests.post(url, json={"model": "embed-small", "input": "alpha"}, timeout=5).status_code == 401


@pytest.mark.integration
def test_localai_standin_models_from_models_dir(start, harness_network):
    files = {
        "models/chat-from-yaml.yaml": b"name: llama-local\nbackend: llama-cpp\nparameters:\n  model: llama.gguf\n",
        "models/all-minilm.bin": b"not a real model",
    }
    container = start(LOCALAI_IMAGE, "localai-dir", files=files)
    _wait_healthy(container)
    base = f"http://{container_ip(container, harness_network.name)}:8080"
    # No LOCALAI_API_KEY: the API is open, as LocalAI is without API_KEY.
    models = requests.get(f"{base}/v1/models", timeout=5).json()
    assert sorted(m["id"] for m in models["data"]) == ["all-minilm", "llama-local"]
