"""Deploy the collection's playbooks onto this machine's engine, isolated from anything else running there,
and talk to the result the way a user's browser or client would.

A ``StackDeployment`` gets its own container, network and volume prefix, its own host ports, base and secret
directories, so a test run never touches a real deployment on the same host; ``destroy`` removes exactly what it
created.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import docker
import requests
import urllib3
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PlaybookRun:
    def __init__(self, completed: subprocess.CompletedProcess):
        self.returncode = completed.returncode
        self.output = completed.stdout
        self.recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                                   "unreachable": int(m.group(4)), "failed": int(m.group(5))}
                      for m in RECAP.finditer(self.output)}

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    def changed_tasks(self) -> list[str]:
        """Names of tasks that reported a change, for a readable idempotence failure."""
        names, current = [], None
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                current = line[6:line.rfind("]")]
            elif line.startswith("changed:") and current:
                names.append(current)
        return names


class StackDeployment:
    def __init__(self, domain: str = "example.test", extra_vars: dict | None = None):
        self.run_id = uuid.uuid4().hex[:6]
        self.prefix = f"dmt{self.run_id}-"
        self.domain = domain
        self.workdir = Path(tempfile.mkdtemp(prefix=f"datamancy-{self.run_id}-"))
        self.base_dir = self.workdir / "base"
        self.secrets_dir = self.workdir / "secrets"
        self.http_port = free_port()
        self.https_port = free_port()
        self.vars = {
            "stack_domain": domain,
            "stack_container_prefix": self.prefix,
            "stack_network_prefix": self.prefix,
            "stack_volume_prefix": self.prefix.replace("-", "_"),
            "stack_base_dir": str(self.base_dir),
            "stack_secrets_dir": str(self.secrets_dir),
            "stack_http_port": self.http_port,
            "stack_https_port": self.https_port,
            "stack_bind_address": "127.0.0.1",
        }
        self.vars.update(extra_vars or {})
        self.vars_file = self.workdir / "vars.yml"
        self.docker = docker.from_env(timeout=120)

    @property
    def portal_host(self) -> str:
        """The SSO portal's vhost: the registry's authelia vhost, ``auth`` unless a suite renames it."""
        vhosts = (self.vars.get("stack_services_custom") or {}).get("authelia", {}).get("vhosts")
        return vhosts[0]["host"] if vhosts else "auth"

    def write_vars(self, **overrides) -> Path:
        data = dict(self.vars, **overrides)
        self.vars_file.write_text(yaml.safe_dump(data))
        return self.vars_file

    def playbook(self, playbook: str, *args: str, timeout: int = 1200, **overrides) -> PlaybookRun:
        vars_file = self.write_vars(**overrides)
        command = [ANSIBLE_PLAYBOOK, "-i", "inventories/local/hosts.yml", playbook, "-e", f"@{vars_file}", *args]
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                   errors="replace", timeout=timeout, check=False)
        completed.stdout += completed.stderr
        return PlaybookRun(completed)

    # --- what the deployment made --------------------------------------------------------------------------

    def containers(self):
        return [c for c in self.docker.containers.list(all=True) if c.name.startswith(self.prefix)]

    def container(self, service: str):
        return self.docker.containers.get(f"{self.prefix}{service}")

    def network(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def read_secret(self, name: str) -> str:
        """A value from the deployment's secret store (tests run as root, like the modules)."""
        return (self.secrets_dir / name).read_text()

    def store_snapshot(self) -> dict[str, str]:
        """sha256 of every file in the store (values, metadata, keys), to prove nothing was regenerated."""
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.secrets_dir.iterdir()) if p.is_file()}

    def exec(self, service: str, command: list[str], user: str | None = None) -> tuple[int, str]:
        result = self.container(service).exec_run(command, user=user or "", demux=False)
        return result.exit_code, result.output.decode(errors="replace")

    def probe(self, network: str, python_code: str, timeout: int = 30) -> tuple[int, str]:
        """Run python3 code in a throw-away container attached only to one of the stack's networks (a name of
        the stack's, or a full network name)."""
        if not network.startswith(self.prefix):
            network = self.network(network)
        container = self.docker.containers.run(
            "datamancy-test/debian:bookworm", ["python3", "-c", python_code], network=network,
            name=f"{self.prefix}probe-{uuid.uuid4().hex[:6]}", detach=True, labels={"datamancy.test": self.run_id},
        )
        try:
            status = container.wait(timeout=timeout)
            return status["StatusCode"], container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)

    # --- talking to it like a browser ------------------------------------------------------------------------

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}.{self.domain}:{self.https_port}{path}"

    def session(self) -> requests.Session:
        session = requests.Session()
        # Environment CA bundles (REQUESTS_CA_BUNDLE) would silently take precedence over session.verify.
        session.trust_env = False
        session.verify = str(self.caddy_root_ca())
        return session

    def caddy_root_ca(self) -> Path:
        """Caddy's internal root CA (local_certs), so TLS is verified for real, not switched off."""
        path = self.workdir / "caddy-root.crt"
        if not path.exists():
            shutil.copy(self.base_dir / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt", path)
        return path

    def destroy(self) -> None:
        for container in self.containers():
            container.remove(force=True, v=True)
        for network in self.docker.networks.list():
            if network.name.startswith(self.prefix):
                network.remove()
        volume_prefix = self.vars["stack_volume_prefix"]
        for volume in self.docker.volumes.list():
            if volume.name.startswith(volume_prefix):
                volume.remove(force=True)
        for image in self.docker.images.list():
            for tag in image.tags:
                if tag.startswith(f"{self.prefix}"):
                    self.docker.images.remove(tag, force=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def secret_strings(store: Path, min_length: int = 12) -> set[str]:
    """Every private value in a secret store and the forms it can take in output: the value, its lines of 16 or
    more characters (PEM keys), its escaped single-line form. Public halves (.pub, *_jwks) and metadata are not
    secret; short values would match by chance (generated secrets are long)."""
    values = set()
    for path in store.iterdir():
        if path.name.startswith(".") or path.name.endswith((".meta", ".pub")) or path.name.endswith("_jwks"):
            continue
        text = path.read_text()
        candidates = {text}
        if path.name.endswith("_keyring"):
            candidates = {key["key"] for key in json.loads(text)["keys"]}
        for value in candidates:
            values.add(value.strip())
            if "\n" in value.strip():
                values.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 16)
                values.add(value.rstrip("\n").replace("\n", "\\n"))
    return {value for value in values if len(value) >= min_length}


def leaked(text: str, secrets: set[str]) -> list[str]:
    """The secrets found in ``text``, also JSON-escaped (as they would appear inside a result), masked: the first
    four characters and the length, so a failing test does not print them either."""
    found = [s for s in secrets if s in text or json.dumps(s)[1:-1] in text]
    return sorted(f"{s[:4]}... ({len(s)} chars)" for s in found)


# Runs in a probe container: HTTP requests given as a JSON list, answers printed as one JSON line. Connection
# failures are answers too (status None and the error), so an unreachable service is an assertion, not a crash.
HTTP_PROBE = """
import json, urllib.error, urllib.request
results = []
for req in json.loads({requests!r}):
    request = urllib.request.Request(req["url"], data=req.get("body", "").encode() or None,
                                     method=req.get("method", "GET"), headers=req.get("headers", {{}}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            results.append({{"status": response.status, "body": response.read().decode()}})
    except urllib.error.HTTPError as error:
        results.append({{"status": error.code, "body": error.read().decode()}})
    except Exception as error:
        results.append({{"status": None, "body": repr(error)}})
print(json.dumps(results))
"""


def http(stack: StackDeployment, network: str, *requests: dict) -> list[dict]:
    """Send HTTP requests from a probe container on one of the stack's networks; one answer per request."""
    code, output = stack.probe(network, HTTP_PROBE.format(requests=json.dumps(list(requests))))
    assert code == 0, output
    return json.loads(output.strip().splitlines()[-1])


def qdrant(path: str, key: str | None = None, method: str = "GET", body: dict | None = None) -> dict:
    request = {"url": f"http://qdrant:6333{path}", "method": method, "headers": {"Content-Type": "application/json"}}
    if key is not None:
        request["headers"]["api-key"] = key
    if body is not None:
        request["body"] = json.dumps(body)
    return request


def clickhouse(query: str, user: str | None = None, password: str | None = None) -> dict:
    """ClickHouse's HTTP interface; credentials in its X-ClickHouse-* headers (understood by 18.16 and 24.8)."""
    headers = {}
    if user is not None:
        headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
    return {"url": "http://clickhouse:8123/", "method": "POST", "body": query, "headers": headers}


@contextlib.contextmanager
def resolve_to(domain: str, ip: str):
    """Make every name under ``domain`` resolve to ``ip`` for requests (like curl --resolve), keeping SNI and the
    Host header so Caddy picks the right site and certificate. The resolver in force before (a package fixture's)
    comes back afterwards."""
    previous = urllib3.util.connection.create_connection

    def create_connection(address, *args, **kwargs):
        host, port = address
        if host == domain or host.endswith("." + domain):
            host = ip
        return previous((host, port), *args, **kwargs)

    urllib3.util.connection.create_connection = create_connection
    try:
        yield
    finally:
        urllib3.util.connection.create_connection = previous


@contextlib.contextmanager
def resolve_for_every_client(domain: str, ip: str = "127.0.0.1"):
    """Names under ``domain`` resolve to ``ip`` for any client library in this process (the OpenAI client's httpx
    does not go through urllib3), keeping SNI and Host."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and (host == domain or host.endswith("." + domain)):
            host = ip
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


def resolve_to_loopback(domain: str):
    """Every name under ``domain`` resolves to 127.0.0.1 for requests (like curl --resolve), keeping SNI and the Host
    header intact so Caddy picks the right site and certificate."""
    return resolve_to(domain, "127.0.0.1")


def json_or_none(response: requests.Response):
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def totp(base32_secret: str, at: float | None = None) -> str:
    """RFC 6238 code (SHA-1, 30 s, 6 digits), as an authenticator app computes it."""
    key = base64.b32decode(base32_secret.upper() + "=" * (-len(base32_secret) % 8))
    counter = struct.pack(">Q", int((time.time() if at is None else at) // 30))
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


# The one-time code in Authelia's identity verification notification, between two rules of dashes.
ONE_TIME_CODE = re.compile(r"^-{40}\n\n([A-Z0-9]+)\n\n-{40}$", re.MULTILINE)


def authelia_register_totp(session: requests.Session, auth_url: str, notifications: Path, target: str) -> None:
    """Register a TOTP device as Authelia 4.39's portal does, then pass the second factor with it.

    After the first factor: elevate the session with the one-time code Authelia sends (read from the filesystem
    notifier), ask for a registration (the secret), confirm it with a code, and sign in with a code of the next
    period (the one just used is not accepted twice; the configured skew of one period admits the next)."""
    base = auth_url.rstrip("/")
    # These endpoints check that the request came to Authelia's own URL (session.cookies[].authelia_url,
    # https://auth.<domain> on port 443). Tests reach Caddy on a published port, so they send the Host header a
    # client of port 443 sends; TLS (SNI) and the cookies are those of the same name.
    host = {"Host": urlsplit(base).hostname}
    response = session.post(f"{base}/api/user/session/elevation", json={}, headers=host)
    assert response.status_code == 200, response.text
    codes = ONE_TIME_CODE.findall(notifications.read_text())
    assert codes, f"no one-time code in {notifications}"
    response = session.put(f"{base}/api/user/session/elevation", json={"otc": codes[-1]}, headers=host)
    assert response.status_code == 200 and response.json()["status"] == "OK", response.text
    response = session.put(f"{base}/api/secondfactor/totp/register",
                           json={"algorithm": "SHA1", "length": 6, "period": 30}, headers=host)
    assert response.status_code == 200, response.text
    secret = response.json()["data"]["base32_secret"]
    now = time.time()
    response = session.post(f"{base}/api/secondfactor/totp/register", json={"token": totp(secret, now)}, headers=host)
    assert response.status_code == 200 and response.json()["status"] == "OK", response.text
    response = session.post(f"{base}/api/secondfactor/totp", json={"token": totp(secret, now + 30), "targetURL": target},
                            headers=host)
    assert response.status_code == 200 and response.json()["status"] == "OK", response.text
