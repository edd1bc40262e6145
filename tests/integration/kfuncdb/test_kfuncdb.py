"""KFuncDB, the Docker socket proxy and the stackops account, converged for real (converge.yml) and checked over
real connections.

Phase 1, the default policy (host.shell.read,host.docker.inspect): a second run changes nothing; the containers are
hardened and only the proxy holds the socket; listing containers works through the proxy; a write call through the
proxy is refused by the proxy; a host.ssh.exec tool answers 403 naming the capability; /v1/chat/completions
executes the tool call the LocalAI stand-in returns through a real LiteLLM and returns the follow-up answer.
Phase 2, re-converged with host.ssh.exec: `docker ps` through the forced-command wrapper works; metacharacters
are refused by the wrapper (over a direct SSH connection with the same key) and by KFuncDB's schema; a changed
host key (regenerated on the stand-in host) makes the call fail.
"""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import docker
import pytest
import requests

from conftest import wait_until
from stacklib import StackDeployment

HERE = Path(__file__).resolve().parent
BASE = "datamancy-test/debian:bookworm"
SSHD_IMAGE = "datamancy-test/kfuncdb-sshd:local"
DEFAULT_CAPS = "host.shell.read,host.docker.inspect"
WITH_SSH = "host.shell.read,host.docker.inspect,host.ssh.exec"
CHAT_MODEL = "standin-chat"

pytestmark = pytest.mark.integration


def litellm_config() -> bytes:
    config = f"""model_list:
  - model_name: {CHAT_MODEL}
    litellm_params:
      model: openai/{CHAT_MODEL}
      api_base: http://localai:8080/v1
      api_key: not-checked-by-the-stand-in
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
""".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("config.yaml")
        info.size, info.mode = len(config), 0o644
        tar.addfile(info, io.BytesIO(config))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack():
    client = docker.from_env(timeout=300)
    started = time.monotonic()
    client.images.build(path=str(HERE / "sshd-image"), tag=SSHD_IMAGE, buildargs={"BASE_IMAGE": BASE}, rm=True,
                        forcerm=True, pull=False)
    deployment = StackDeployment(extra_vars={
        "stack_mode": "full",
        "docker_host_manage_engine": False,
        "kfuncdb_base_image": BASE,
        "kfuncdb_image_name": "datamancy-test/kfuncdb-role",
        "docker_socket_proxy_base_image": BASE,
        "docker_socket_proxy_image_name": "datamancy-test/docker-socket-proxy-role",
        "kfuncdb_allow_caps": DEFAULT_CAPS,
        "kfuncdb_tool_timeout_s": 20,
        "kfuncdb_test_sshd_image": SSHD_IMAGE,
    })
    deployment.timings = {"image": time.monotonic() - started}
    try:
        started = time.monotonic()
        first = deployment.playbook("tests/integration/kfuncdb/converge.yml")
        deployment.timings["converge"] = time.monotonic() - started
        assert first.returncode == 0, first.output[-6000:]
        start_llm(deployment)
        yield deployment
    finally:
        print("timings (s):", {k: round(v, 1) for k, v in deployment.timings.items()})
        deployment.destroy()


def start_llm(deployment: StackDeployment) -> None:
    """The LocalAI stand-in and a real LiteLLM in front of it, on the stack's backend network, with the master
    key from the deployment's store (the same file KFuncDB reads)."""
    network = deployment.network("backend")
    common = {"detach": True, "network": network, "labels": {"datamancy.test": deployment.run_id}}
    deployment.docker.containers.run("datamancy-test/localai-standin:local", name=f"{deployment.prefix}localai",
                                     **common, environment={"LOCALAI_MODELS": CHAT_MODEL})
    litellm = deployment.docker.containers.create(
        "datamancy-test/litellm:local", name=f"{deployment.prefix}litellm", **common,
        environment={"LITELLM_MASTER_KEY": deployment.read_secret("litellm_master_key").strip()})
    litellm.put_archive("/app", litellm_config())
    litellm.start()
    for container, alias in ((f"{deployment.prefix}localai", "localai"), (f"{deployment.prefix}litellm", "litellm")):
        # containers.run(network=...) gives no alias; reconnect with the upstream names KFuncDB and LiteLLM use.
        net = deployment.docker.networks.get(network)
        net.disconnect(container)
        net.connect(container, aliases=[alias])


def ip_of(deployment, service, network):
    container = deployment.container(service)
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][deployment.network(network)]["IPAddress"]


def kfuncdb(deployment) -> str:
    return f"http://{ip_of(deployment, 'kfuncdb', 'frontend')}:8081"


def keyed(deployment) -> dict:
    """What Caddy adds for an administrator Authelia admitted: KFuncDB's key (the registry's upstream_key)."""
    return {"Authorization": f"Bearer {deployment.read_secret('kfuncdb_api_key').strip()}"}


def call(deployment, name, args=None, timeout=60):
    return requests.post(f"{kfuncdb(deployment)}/call-tool", json={"name": name, "args": args or {}},
                         headers=keyed(deployment), timeout=timeout)


# --- phase 1: the default policy ---------------------------------------------------------------------------------

def test_second_run_changes_nothing(stack):
    rerun = stack.playbook("tests/integration/kfuncdb/converge.yml")
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert rerun.changed == 0, rerun.changed_tasks()


def test_containers_are_hardened_and_only_the_proxy_holds_the_socket(stack):
    tool_host = stack.container("kfuncdb").attrs
    assert tool_host["Config"]["User"] == "10081:10081"
    assert tool_host["HostConfig"]["ReadonlyRootfs"] is True
    assert tool_host["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in tool_host["HostConfig"]["SecurityOpt"]
    assert not any("docker.sock" in m["Source"] for m in tool_host["Mounts"])
    assert set(tool_host["NetworkSettings"]["Networks"]) == {stack.network(n) for n in ("frontend", "backend", "tools")}
    assert tool_host["Config"]["Env"].count(f"KFUNCDB_ALLOW_CAPS={DEFAULT_CAPS}") == 1
    assert tool_host["State"]["Health"]["Status"] == "healthy"

    proxy = stack.container("docker-proxy").attrs
    # The proxy's network is KFuncDB's alone: internal, and no other service on it.
    assert set(proxy["NetworkSettings"]["Networks"]) == {stack.network("tools")}
    tools = stack.docker.networks.get(stack.network("tools"))
    tools.reload()
    assert tools.attrs["Internal"] is True
    assert {c["Name"] for c in tools.attrs["Containers"].values()} == {f"{stack.prefix}kfuncdb",
                                                                       f"{stack.prefix}docker-proxy"}
    socket_mounts = [m for m in proxy["Mounts"] if m["Destination"] == "/var/run/docker.sock"]
    assert len(socket_mounts) == 1 and socket_mounts[0]["RW"] is False
    assert not proxy["Config"]["User"].startswith("0") and proxy["HostConfig"]["ReadonlyRootfs"] is True
    assert not proxy["HostConfig"]["PortBindings"] and not tool_host["HostConfig"]["PortBindings"]


def test_tools_lists_the_policy(stack):
    tools = {t["name"]: t for t in requests.get(f"{kfuncdb(stack)}/tools", headers=keyed(stack), timeout=10).json()}
    assert tools["docker_list_containers"]["available"] is True
    assert tools["host_info"]["available"] is True
    assert tools["stackops_docker_ps"]["available"] is False
    assert tools["stackops_docker_ps"]["missingCapabilities"] == ["host.ssh.exec"]
    assert not any(t["plugin"] == "browser" for t in tools.values())


def test_listing_containers_works_through_the_proxy(stack):
    response = call(stack, "docker_list_containers")
    assert response.status_code == 200, response.text
    names = {c["name"] for c in response.json()["result"]}
    assert {f"{stack.prefix}kfuncdb", f"{stack.prefix}docker-proxy"} <= names
    logs = call(stack, "docker_container_logs", {"container": f"{stack.prefix}docker-proxy", "tail": 20})
    assert logs.status_code == 200 and "forwarding the allowlisted" in logs.json()["result"]["log"] + \
        call(stack, "docker_container_logs", {"container": f"{stack.prefix}docker-proxy", "tail": 1000}).text


def test_a_write_call_through_the_proxy_is_refused_by_the_proxy(stack):
    target = stack.container("kfuncdb")
    started_at = target.attrs["State"]["StartedAt"]
    key = stack.read_secret("docker_proxy_api_key").strip()
    code = f"""
import json, urllib.request, urllib.error
results = {{}}
auth = {{"Authorization": "Bearer {key}"}}
for method, path in [("POST", "/containers/{target.name}/restart"), ("POST", "/containers/{target.name}/stop"),
                     ("POST", "/containers/create"), ("DELETE", "/containers/{target.name}"),
                     ("POST", "/containers/{target.name}/exec"), ("GET", "/images/json")]:
    request = urllib.request.Request("http://docker-proxy:2375" + path, data=b"{{}}" if method == "POST" else None,
                                     method=method, headers=dict(auth, **{{"Content-Type": "application/json"}}))
    try:
        urllib.request.urlopen(request, timeout=10)
        results[method + " " + path] = 200
    except urllib.error.HTTPError as error:
        results[method + " " + path] = error.code
ping = urllib.request.urlopen(urllib.request.Request("http://docker-proxy:2375/_ping", headers=auth),
                              timeout=10).read().decode()
print(json.dumps({{"results": results, "ping": ping}}))
"""
    # Run from the tools network with the key: what KFuncDB itself could send.
    status, output = stack.probe("tools", code)
    assert status == 0, output
    report = json.loads(output.strip().splitlines()[-1])
    assert report["ping"] == "OK"
    assert set(report["results"].values()) == {403}, report
    target.reload()
    assert target.attrs["State"]["StartedAt"] == started_at and target.attrs["State"]["Running"]


def test_a_neighbour_without_the_key_reaches_no_tool(stack):
    """A container on KFuncDB's networks (LocalAI's, Open WebUI's) that did not come through Caddy: no key, no
    tool list, no call; and a wrong key is no key. Only the engine's health probe is open."""
    code = """
import json, urllib.request, urllib.error
results = {}
for method, path, headers in [("GET", "/tools", {}), ("POST", "/call-tool", {}), ("GET", "/", {}),
                              ("POST", "/call-tool", {"Authorization": "Bearer " + "0" * 64}),
                              ("POST", "/v1/chat/completions", {})]:
    body = json.dumps({"name": "docker_list_containers", "args": {}}).encode() if method == "POST" else None
    request = urllib.request.Request("http://kfuncdb:8081" + path, data=body, method=method,
                                     headers=dict(headers, **{"Content-Type": "application/json"}))
    label = method + " " + path + (" wrong key" if headers else "")
    try:
        results[label] = urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        results[label] = error.code
health = urllib.request.urlopen("http://kfuncdb:8081/healthz", timeout=10).status
print(json.dumps({"results": results, "health": health}))
"""
    for network in ("frontend", "backend"):
        status, output = stack.probe(network, code)
        assert status == 0, output
        report = json.loads(output.strip().splitlines()[-1])
        assert report["health"] == 200
        assert set(report["results"].values()) == {401}, (network, report)


def test_a_text_plain_cross_origin_post_runs_nothing(stack):
    """Even with the key (a browser behind Caddy has it added): a body a foreign page can send without a CORS
    preflight, or a request that says it comes from another site, is refused before any tool runs."""
    target = f"{kfuncdb(stack)}/call-tool"
    body = json.dumps({"name": "docker_list_containers", "args": {}})
    time.sleep(1)  # the log lines of earlier tests' calls stay before `since`
    since = time.time()
    plain = requests.post(target, data=body, timeout=10,
                          headers=dict(keyed(stack), **{"Content-Type": "text/plain;charset=UTF-8",
                                                        "Origin": "https://open-webui.example.test"}))
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    foreign = requests.post(target, data=body, timeout=10,
                            headers=dict(keyed(stack), **{"Content-Type": "application/json",
                                                          "Origin": "https://open-webui.example.test",
                                                          "Sec-Fetch-Site": "same-site"}))
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "cross_site_refused"
    logs = stack.container("kfuncdb").logs(since=since).decode(errors="replace")
    assert '"POST /call-tool HTTP/1.1" 415' in logs and '"POST /call-tool HTTP/1.1" 403' in logs, logs
    assert "tool docker_list_containers called by" not in logs, logs


def test_the_proxy_answers_no_neighbour(stack):
    """From backend (where the proxy used to listen) the name does not even resolve; from its own network without
    the key, or with a wrong one, every call is 401; and the fragment trick is refused."""
    code = """
import json, socket, urllib.request, urllib.error
report = {}
try:
    socket.getaddrinfo("docker-proxy", 2375)
    report["resolves"] = True
except OSError:
    report["resolves"] = False
attempts = [("no key", {}, "/containers/json"), ("wrong key", {"Authorization": "Bearer " + "0" * 64},
            "/containers/json"), ("no key ping", {}, "/_ping")]
for label, headers, path in attempts if report["resolves"] else []:
    try:
        report[label] = urllib.request.urlopen(urllib.request.Request("http://docker-proxy:2375" + path,
                                                                      headers=headers), timeout=10).status
    except urllib.error.HTTPError as error:
        report[label] = error.code
    except OSError as error:
        report[label] = str(error)
print(json.dumps(report))
"""
    status, output = stack.probe("backend", code)
    assert status == 0, output
    backend = json.loads(output.strip().splitlines()[-1])
    assert backend["resolves"] is False, backend
    status, output = stack.probe("tools", code)
    assert status == 0, output
    tools = json.loads(output.strip().splitlines()[-1])
    assert tools == {"resolves": True, "no key": 401, "wrong key": 401, "no key ping": 401}, tools
    key = stack.read_secret("docker_proxy_api_key").strip()
    fragment = f"""
import http.client
connection = http.client.HTTPConnection("docker-proxy", 2375, timeout=10)
connection.request("GET", "/containers/{stack.prefix}kfuncdb/logs?stdout=1#&follow=1",
                   headers={{"Authorization": "Bearer {key}"}})
print(connection.getresponse().status)
"""
    status, output = stack.probe("tools", fragment)
    assert status == 0 and output.strip().splitlines()[-1] == "403", output


def test_a_tool_needing_ssh_is_refused_with_403(stack):
    response = call(stack, "stackops_docker_ps")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "capability_refused" and error["capabilities"] == ["host.ssh.exec"]
    assert "host.ssh.exec" in error["message"]


def test_chat_completion_executes_the_models_tool_call_through_litellm(stack):
    litellm = stack.container("litellm")
    wait_until(lambda: (litellm.reload() or litellm.attrs["State"]["Health"]["Status"] == "healthy"),
               timeout=120, what="LiteLLM healthy")
    response = requests.post(f"{kfuncdb(stack)}/v1/chat/completions", headers=keyed(stack), timeout=120, json={
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Which containers run? Use docker_list_containers."}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kfuncdb"]["toolCalls"][0]["name"] == "docker_list_containers"
    assert body["kfuncdb"]["toolCalls"][0]["status"] == 200
    answer = body["choices"][0]["message"]["content"]
    # The stand-in's follow-up answer quotes the tool result KFuncDB appended: real container names.
    assert answer.startswith("stand-in final answer based on the tool result:"), answer
    assert f"{stack.prefix}docker-proxy" in answer


def test_chat_tool_call_to_a_refused_tool_is_answered_403_to_the_model(stack):
    response = requests.post(f"{kfuncdb(stack)}/v1/chat/completions", headers=keyed(stack), timeout=120, json={
        "model": CHAT_MODEL, "messages": [{"role": "user", "content": "run stackops_docker_ps"}]})
    body = response.json()
    # The refused tool is never even offered to the model, so the stand-in cannot pick it: no call is made.
    assert response.status_code == 200 and body["kfuncdb"]["toolCalls"] == []


# --- phase 2: host.ssh.exec allowed ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_ssh(stack):
    started = time.monotonic()
    run = stack.playbook("tests/integration/kfuncdb/converge.yml", kfuncdb_allow_caps=WITH_SSH)
    stack.timings["converge_ssh"] = time.monotonic() - started
    assert run.returncode == 0, run.output[-6000:]
    stack.vars["kfuncdb_allow_caps"] = WITH_SSH
    wait_until(lambda: requests.get(f"{kfuncdb(stack)}/healthz", timeout=3).ok, timeout=60, what="KFuncDB up")
    return stack


def test_docker_ps_through_the_wrapper_works(with_ssh):
    response = call(with_ssh, "stackops_docker_ps")
    assert response.status_code == 200, response.text
    stdout = response.json()["result"]["stdout"]
    assert stdout.startswith("CONTAINER ID") and f"{with_ssh.prefix}kfuncdb" in stdout
    logs = call(with_ssh, "stackops_docker_logs", {"container": f"{with_ssh.prefix}docker-proxy", "tail": 5})
    assert logs.status_code == 200, logs.text
    # A container outside the wrapper's allowlist is refused by the wrapper on the host.
    other = call(with_ssh, "stackops_docker_restart", {"container": f"{with_ssh.prefix}sshhost"})
    assert other.status_code == 502 and "not in the allowlist" in other.json()["error"]["message"]


def test_metacharacters_are_refused_by_the_wrapper(with_ssh, tmp_path):
    key = tmp_path / "id"
    key.write_text(with_ssh.read_secret("stackops_ssh_key"))
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text((with_ssh.base_dir / "kfuncdb" / "config" / "known_hosts").read_text())
    host = ip_of(with_ssh, "sshhost", "backend")

    def ssh(command):
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}", "-o", "HostKeyAlias=datamancy-host",
             "-o", "ConnectTimeout=10", f"stackops@{host}", command],
            capture_output=True, text=True, timeout=30, check=False)

    allowed = ssh("docker ps")
    assert allowed.returncode == 0 and allowed.stdout.startswith("CONTAINER ID"), allowed.stderr
    for command in ("docker ps; id", "docker ps && cat /etc/shadow", "docker logs $(id)", "id", "sh -i"):
        refused = ssh(command)
        assert refused.returncode == 126 and "refused" in refused.stderr, (command, refused)
        assert "uid=" not in refused.stdout
    # KFuncDB's own schema refuses them before any connection is made.
    response = call(with_ssh, "stackops_docker_restart", {"container": "x;id"})
    assert response.status_code == 400


def test_a_changed_host_key_makes_the_call_fail(with_ssh):
    host = with_ssh.container("sshhost")
    exit_code, output = host.exec_run(["sh", "-c", "rm -f /etc/ssh/ssh_host_ed25519_key* && "
                                                   "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"])
    assert exit_code == 0, output
    host.restart(timeout=5)
    wait_until(lambda: (host.reload() or host.attrs["State"]["Health"]["Status"] == "healthy"), timeout=60,
               what="sshd back")
    response = call(with_ssh, "stackops_docker_ps")
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "host key" in message.lower() and "verification failed" in message.lower(), message
