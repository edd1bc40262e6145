"""The registry refuses what it does not understand, on the day-2 package's shared full deployment, before anything
changes: an operator's stack_services_custom with a misspelt key, a newline smuggled into a reason (it would have
reached the Caddyfile), or a service name that is no DNS label. Each run of site.yml fails with a message naming the
service, the key and the value; it changes nothing, restarts no container and leaves the Caddyfile as it was. So is
an API allowlist open beyond the private ranges without a reason, and Open WebUI's trusted_headers mode while
other services share its networks.
"""
from __future__ import annotations

import hashlib
import re

import pytest

from stacklib import StackDeployment

REFUSALS = {
    "misspelt key": (
        {"stack_services_custom": {"qdrant": {"netwroks": ["database"]}}},
        "Registry problems: service 'qdrant': unknown key 'netwroks' (did you mean 'networks'?)"),
    "newline in a reason": (
        {"stack_services_custom": {"caddy": {"cap_add_reason": "binds 443\n}\nevil.example {\n respond 200"}}},
        "service 'caddy': cap_add_reason must be one line of text without control characters"),
    "service name no DNS label": (
        {"stack_services_custom": {"Evil_Service": {"mode": "full", "networks": ["backend"]}}},
        "service 'Evil_Service': a service name is lower-case letters, digits and inner '-'"),
    # The survey's allowlist answer, widened to everyone: refused unless a reason says why.
    "allowlist beyond the private ranges without a reason": (
        {"stack_api_default_allowlist": "0.0.0.0/0", "stack_api_allowlist_reason": ""},
        "service 'litellm' vhost 'api.litellm': the allowlist admits addresses outside the private and local "
        "ranges (0.0.0.0/0; 172.16.0.0/12 holds Docker's own bridges)"),
    # An image variable emptied on the command line would recreate Redis from no image (every session lost).
    "an empty image variable": (
        {"redis_image": ""},
        "Invalid stack settings: image variables set to nothing: redis_image (redis); set an image reference"),
    # A bad CIDR is answered with that rule alone, not with every rule of the stack settings.
    "a bad CIDR": (
        {"litellm_api_allowlist": "10.0.0.0/33"},
        "Invalid stack settings: Registry problems: service 'litellm' vhost 'api.litellm': invalid CIDR(s) in "
        "allowlist: 10.0.0.0/33"),
    # Open WebUI shares backend with LiteLLM and more: any of them could send Remote-Email itself.
    "trusted headers with neighbours": (
        {"open_webui_auth_mode": "trusted_headers"},
        "any service but Caddy: authelia, backup, kfuncdb, lam, litellm, localai, openldap, redis could "
        "send Remote-Email straight to it"),
}


@pytest.fixture(name="stack", scope="module")
def stack_fixture(full_stack):
    return full_stack


def container_states(stack: StackDeployment) -> dict[str, tuple[str, str]]:
    return {c.name: (c.id, c.attrs["State"]["StartedAt"]) for c in stack.containers()}


def caddyfile_digest(stack: StackDeployment) -> str:
    return hashlib.sha256((stack.base_dir / "caddy" / "etc" / "Caddyfile").read_bytes()).hexdigest()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_registry_entry_is_refused_before_anything_changes(stack, case):
    overrides, expected = REFUSALS[case]
    before, caddyfile = container_states(stack), caddyfile_digest(stack)
    run = stack.playbook("site.yml", **overrides)
    assert run.returncode != 0, run.output[-3000:]
    message = re.sub(r"\s+", " ", run.output)
    assert expected in message, run.output[-3000:]
    # One rule broken, one message: the rules that hold stay quiet.
    assert "stack_domain must be" not in message
    assert "evil.example" not in (stack.base_dir / "caddy" / "etc" / "Caddyfile").read_text()
    assert run.changed == 0, run.changed_tasks()
    assert container_states(stack) == before
    assert caddyfile_digest(stack) == caddyfile
