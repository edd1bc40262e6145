"""The journeys: what a person does, in a real browser, on the deployment the README's own command makes.

One deployment for the package, made exactly as README.md says (`scripts/deploy.sh`, the embedded inventory
inventories/local, full mode as the README switches to it); the tests add only what a person would: the accounts an
administrator creates and the answers typed into pages. Every step leaves a screenshot and the page source in
tests/output/journeys/<run>/<test>/<browser>/; the folder is printed when a journey fails.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

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

    @property
    def root_ca(self) -> Path:
        return self.base_dir / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    @property
    def notifications(self) -> Path:
        return self.base_dir / "authelia" / "data" / "notification.txt"

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
        return subprocess.run(["bash", "scripts/deploy.sh", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, errors="replace", timeout=1800, check=False)


@pytest.fixture(scope="package")
def readme():
    deployment = ReadmeDeployment()
    made = deployment.deploy("-e", "stack_mode=full")
    assert made.returncode == 0, (made.stdout + made.stderr)[-6000:]
    try:
        yield deployment
    finally:
        # The machine as it was: containers and networks gone, data kept as the README's uninstall does.
        deployment.deploy("-e", "stack_mode=full", "-e", "stack_state=absent")


@pytest.fixture
def browsers(request, readme):
    """browsers(name) opens one more person's browser for this test; all close at its end."""
    opened = []
    folder = RUN_DIR / request.node.name

    def open_browser(name: str) -> Browser:
        browser = Browser(name, folder / name, readme.root_ca, readme.domain, readme.port)
        opened.append(browser)
        return browser

    request.node.journey_folder = folder
    yield open_browser
    for browser in opened:
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    folder = getattr(item, "journey_folder", None)
    if report.failed and folder is not None:
        report.sections.append(("journey", f"screenshots and page sources of every step: {folder}"))
        print(f"\njourney {item.name} failed; every step's screenshot and page source: {folder}")
