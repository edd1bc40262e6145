"""Helpers of the Open WebUI integration test: name resolution to Caddy's container address, the LiteLLM and LocalAI
stand-in pair, and a browser's OIDC login (Authelia 4.39 API: first factor, TOTP, consent) scripted with requests."""
from __future__ import annotations

import io
import tarfile
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from stacklib import StackDeployment, authelia_register_totp, resolve_to

LITELLM_UID = 10001  # the harness LiteLLM image's user
STANDIN_MODEL = "standin-chat"


def via_caddy_container(stack):
    """The deployment's names resolve to its Caddy container (frontend network, port 443): the URLs containers use,
    so the OIDC issuer the host sees equals the one Open WebUI sees."""
    return resolve_to(stack.domain, container_ip(stack.container("caddy"), stack.network("frontend")))


def container_ip(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def wait_until(probe, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (requests.RequestException, OSError) as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last error: {last!r}")


# --- LiteLLM in front of the LocalAI stand-in, as plain containers on the stack's backend network --------------

LITELLM_CONFIG = f"""\
model_list:
  - model_name: {STANDIN_MODEL}
    litellm_params:
      model: openai/{STANDIN_MODEL}
      api_base: http://localai:8080/v1
      api_key: os.environ/LOCALAI_API_KEY
litellm_settings:
  drop_params: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def _tar(name: str, payload: bytes, uid: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid, info.mtime = len(payload), 0o400, uid, uid, time.time()
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def start_llm_standins(stack: StackDeployment, localai_key: str):
    """LocalAI stand-in (alias localai) and the real LiteLLM proxy (alias litellm) on the backend network, LiteLLM
    keyed with the deployment's own litellm_master_key from the store; returns LiteLLM's base URL from the host."""
    backend = stack.network("backend")
    labels = {"datamancy.test": stack.run_id}
    stack.docker.containers.run(
        "datamancy-test/localai-standin:local", name=f"{stack.prefix}owt-localai", detach=True, labels=labels,
        environment={"LOCALAI_API_KEY": localai_key, "LOCALAI_MODELS": STANDIN_MODEL},
        network=backend, networking_config={backend: stack.docker.api.create_endpoint_config(aliases=["localai"])},
    )
    litellm = stack.docker.containers.create(
        "datamancy-test/litellm:local", name=f"{stack.prefix}owt-litellm", labels=labels,
        environment={"LITELLM_MASTER_KEY": stack.read_secret("litellm_master_key"), "LOCALAI_API_KEY": localai_key},
        network=backend, networking_config={backend: stack.docker.api.create_endpoint_config(aliases=["litellm"])},
    )
    litellm.put_archive("/app", _tar("config.yaml", LITELLM_CONFIG.encode(), LITELLM_UID))
    litellm.start()
    base = f"http://{container_ip(litellm, backend)}:4000"
    wait_until(lambda: requests.get(f"{base}/health/liveliness", timeout=3).ok, 180, "litellm liveliness")
    return base


# --- a browser's login ---------------------------------------------------------------------------------------

class Browser:
    """A requests session that verifies Caddy's certificate and reaches every vhost at https://<host>.<domain>/."""

    def __init__(self, stack: StackDeployment):
        self.stack = stack
        self.session = stack.session()
        self.hops: list[str] = []

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}.{self.stack.domain}{path}"

    def first_factor(self, user: str, target: str) -> None:
        response = self.session.post(self.url(self.stack.portal_host, "/api/firstfactor"), json={
            "username": user, "password": self.stack.read_secret(f"ldap_user_{user}_password"),
            "keepMeLoggedIn": False, "targetURL": target})
        assert response.status_code == 200 and response.json()["status"] == "OK", response.text

    def register_and_pass_totp(self, target: str) -> None:
        """Register a TOTP device as the portal does (session elevation by the one-time code the filesystem
        notifier writes), then pass the second factor with it."""
        authelia_register_totp(self.session, self.url(self.stack.portal_host),
                               self.stack.base_dir / "authelia" / "data" / "notification.txt", target)

    def follow(self, url: str, limit: int = 10) -> requests.Response:
        """Follow redirects by hand, recording each hop, until a response that is not a redirect or the consent
        page of the portal (which a browser renders as an app: it has no server-side redirect)."""
        for _attempt in range(limit):
            self.hops.append(url)
            response = self.session.get(url, allow_redirects=False, timeout=60)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = urljoin(url, response.headers["Location"])
            if urlsplit(url).path.startswith("/consent/openid"):
                self.hops.append(url)
                return response
        raise AssertionError(f"too many redirects: {self.hops}")

    def oidc_login(self) -> str:
        """Open WebUI's "Continue with Authelia": /oauth/oidc/login -> Authelia's authorization endpoint -> consent
        (accepted through the portal's API, as the portal's page does) -> /oauth/oidc/callback, where Open WebUI
        exchanges the code for tokens with Authelia itself and sets its `token` cookie. Returns that token."""
        response = self.follow(self.url("open-webui", "/oauth/oidc/login"))
        if urlsplit(self.hops[-1]).path.startswith("/consent/openid"):
            # The portal's consent page names the pending consent by its flow id.
            consent_id = parse_qs(urlsplit(self.hops[-1]).query).get("flow_id", [None])[0]
            assert consent_id, self.hops
            details = self.session.get(self.url(self.stack.portal_host, "/api/oidc/consent"), params={"flow_id": consent_id})
            assert details.status_code == 200 and details.json()["status"] == "OK", (details.text, self.hops)
            client_id = details.json()["data"]["client_id"]
            answer = {"flow_id": consent_id, "client_id": client_id, "consent": True, "pre_configure": False}
            accepted = self.session.post(self.url(self.stack.portal_host, "/api/oidc/consent"), json=answer)
            assert accepted.status_code == 200, accepted.text
            response = self.follow(urljoin(self.url(self.stack.portal_host), accepted.json()["data"]["redirect_uri"]))
        assert any(urlsplit(hop).path == "/oauth/oidc/callback" for hop in self.hops), self.hops
        assert "error" not in urlsplit(self.hops[-1]).query, self.hops[-1]
        token = self.session.cookies.get("token", domain=f"open-webui.{self.stack.domain}")
        assert token, f"no Open WebUI token cookie after {self.hops} (last status {response.status_code})"
        return token
