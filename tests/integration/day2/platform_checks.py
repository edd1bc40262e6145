"""Checks the day-2 suites share: is the platform still usable after an operation."""
from __future__ import annotations

import time

import requests

from stacklib import StackDeployment


def login(stack: StackDeployment, user: str = "carol") -> requests.Session | None:
    """First factor through Authelia's API with the user's generated initial password (openldap role: the secret
    ldap_user_<uid>_password); the session on success, else None. Authelia checks the password against OpenLDAP
    and keeps the session in Redis."""
    session = stack.session()
    response = session.post(stack.url("auth", "/api/firstfactor"), json={
        "username": user, "password": stack.read_secret(f"ldap_user_{user}_password"), "keepMeLoggedIn": False})
    return session if response.status_code == 200 and response.json().get("status") == "OK" else None


def authelia_healthy(stack: StackDeployment, timeout: float = 300) -> bool:
    """Authelia answers its health endpoint through Caddy and Docker reports it healthy. Polled: on a loaded host
    one health check can time out while a dependency comes back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = stack.session().get(stack.url("auth", "/api/health"), timeout=10)
            if response.status_code == 200 and \
                    stack.container("authelia").attrs["State"]["Health"]["Status"] == "healthy":
                return True
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(3)
