"""The journeys: what a person does, in a real browser, on the deployment the README's own command makes.

One deployment for the package, made exactly as README.md says (`scripts/deploy.sh`, the embedded inventory
inventories/local, full mode as the README switches to it), on this machine's default paths and ports; the tests add
only accounts (an administrator and a user of their own, so a deployment the reader made keeps its own admin and
devices) and the answers typed into pages. Afterwards the journeys' accounts are deleted and the deployment is left
in the mode it had (none: uninstalled, data kept). Every step leaves a screenshot and the page source in
tests/output/journeys/<run>/<test>/<browser>/; the folder is printed when a journey fails.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from browser import Browser

REPO = Path(__file__).resolve().parents[3]
RUN_DIR = REPO / "tests" / "output" / "journeys" / time.strftime("%Y%m%dT%H%M%S")


@dataclass
class ReadmeDeployment:
    """Where the README says things are after `scripts/deploy.sh` on this machine."""
    domain: str = "stack.localhost"
    port: int = 443
    base_dir: Path = Path("/opt/datamancy")
    secrets_dir: Path = Path("/etc/datamancy/secrets")
    # The journeys' own accounts, named for this run: the admin (admins, users, openwebui-admin) and a user.
    run: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def admin(self) -> str:
        return f"jadmin{self.run}"

    @property
    def user(self) -> str:
        return f"juser{self.run}"

    @property
    def lam_user(self) -> str:
        """The account the administrator creates through LAM's pages."""
        return f"jlam{self.run}"

    @property
    def root_ca(self) -> Path:
        return self.base_dir / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    @property
    def notifications(self) -> Path:
        return self.base_dir / "authelia" / "data" / "notification.txt"

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def deployed_mode(self) -> str | None:
        """The mode site.yml recorded on this host (None: nothing deployed here)."""
        record = self.base_dir / "stack_mode.json"
        return json.loads(record.read_text())["stack_mode"] if record.exists() else None

    def users_file(self, workdir: Path) -> Path:
        """The embedded inventory's users plus the journeys' two (what an administrator adds)."""
        inventory = yaml.safe_load((REPO / "inventories/local/group_vars/all/main.yml").read_text())
        users = list(inventory["openldap_users"]) + [
            {"uid": self.admin, "given_name": "Journey", "surname": "Admin", "mail": f"{self.admin}@stack.localhost",
             "groups": ["admins", "users", "openwebui-admin"]},
            {"uid": self.user, "given_name": "Journey", "surname": "User", "mail": f"{self.user}@stack.localhost",
             "groups": ["users"]}]
        path = workdir / "journey-users.json"
        path.write_text(json.dumps({"openldap_users": users}))
        return path

    def delete_accounts(self) -> None:
        """The journeys' accounts out of the directory (entries and group memberships: the directory has no
        referential integrity overlay) and their passwords out of the store."""
        for uid in (self.admin, self.user, self.lam_user):
            dn = f"uid={uid},ou=users,dc=stack,dc=local"
            for group in ("admins", "users", "openwebui-admin"):
                subprocess.run(["docker", "exec", "-i", "openldap", "ldapmodify", "-Y", "EXTERNAL", "-H", "ldapi:///",
                                "-Q"], input=f"dn: cn={group},ou=groups,dc=stack,dc=local\nchangetype: modify\n"
                               f"delete: member\nmember: {dn}\n", text=True, capture_output=True, check=False)
            subprocess.run(["docker", "exec", "openldap", "ldapdelete", "-Y", "EXTERNAL", "-H", "ldapi:///", "-Q", dn],
                           capture_output=True, check=False)
            for path in self.secrets_dir.glob(f"ldap_user_{uid}_password*"):
                path.unlink()

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
        return subprocess.run(["bash", "scripts/deploy.sh", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, errors="replace", timeout=1800, check=False)


@pytest.fixture(scope="package")
def readme(tmp_path_factory):
    deployment = ReadmeDeployment()
    before = deployment.deployed_mode()
    users = deployment.users_file(tmp_path_factory.mktemp("journeys"))
    try:
        made = deployment.deploy("-e", "stack_mode=full", "-e", f"@{users}")
        assert made.returncode == 0, (made.stdout + made.stderr)[-6000:]
        yield deployment
    finally:
        deployment.delete_accounts()
        # The machine as it was: the mode it had, or nothing running (data kept, as the README's uninstall does).
        if before is None:
            deployment.deploy("-e", "stack_mode=full", "-e", "stack_state=absent")
        elif before != "full":
            deployment.deploy("-e", f"stack_mode={before}")


@pytest.fixture
def ldap_entry():
    """ldap_entry(dn) -> {attribute: [values]}, read over ldapi as slapd's root (what the directory holds, not
    what a UI shows)."""
    def read(dn: str) -> dict[str, list[str]]:
        found = subprocess.run(["docker", "exec", "openldap", "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-Y",
                                "EXTERNAL", "-H", "ldapi:///", "-Q", "-s", "base", "-b", dn],
                               capture_output=True, text=True, check=True).stdout
        entry: dict[str, list[str]] = {}
        for line in found.splitlines():
            name, sep, value = line.partition(": ")
            if sep and not name.endswith(":"):  # base64 values (name::) are not compared here
                entry.setdefault(name, []).append(value)
        return entry
    return read


@pytest.fixture(scope="module")
def open_browsers(readme):
    """The people's browsers of one journey module, kept open from test to test as a person keeps a browser."""
    opened: dict[str, Browser] = {}
    yield opened
    for browser in opened.values():
        browser.close()


@pytest.fixture
def browsers(request, readme, open_browsers):
    """browsers(name): that person's browser (opened at first use, kept for the module); every step of this test
    is kept in RUN_DIR/<test>/<name>/."""
    folder = RUN_DIR / request.node.name
    request.node.journey_folder = folder

    def browser_of(name: str) -> Browser:
        if name not in open_browsers:
            open_browsers[name] = Browser(name, folder / name, readme.root_ca, readme.domain, readme.port)
        browser = open_browsers[name]
        browser.keep_steps_in(folder / name)
        return browser

    return browser_of


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    folder = getattr(item, "journey_folder", None)
    if report.failed and folder is not None:
        report.sections.append(("journey", f"screenshots and page sources of every step: {folder}"))
        print(f"\njourney {item.name} failed; every step's screenshot and page source: {folder}")
