"""A person's browser for the journeys: Debian's Chromium driven by Selenium, headless.

It trusts Caddy's internal root CA the way a person who followed the README does (imported into an NSS database
of its own, nothing switched off), resolves the deployment's names to this machine, and keeps a screenshot and the
page source after every step in one folder per journey, which the journeys' conftest prints when one fails.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# This machine's network is closed: without these, Chromium keeps trying Google's services at every start.
QUIET_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--window-size=1280,960")


def totp(secret_base32: str, at: float | None = None, digits: int = 6, period: int = 30) -> str:
    """RFC 6238 code for a base32 secret (what an authenticator app shows)."""
    key = base64.b32decode(secret_base32.upper() + "=" * (-len(secret_base32) % 8))
    counter = int((time.time() if at is None else at) // period)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(code).zfill(digits)


class Browser:
    def __init__(self, name: str, out_dir: Path, root_ca: Path, domain: str, port: int = 443):
        self.name = name
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.port = port
        self.steps = 0
        self.home = Path(tempfile.mkdtemp(prefix="journey-home-"))
        self._trust(root_ca)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in QUIET_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.home / 'profile'}")
        # Every name of the deployment is this machine (*.localhost already is, for Chromium).
        options.add_argument(f"--host-resolver-rules=MAP *.{domain} 127.0.0.1, MAP {domain} 127.0.0.1")
        service = Service(CHROMEDRIVER, env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"})
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(60)

    def _trust(self, root_ca: Path) -> None:
        """Caddy's root CA in Chromium's NSS database ($HOME/.pki/nssdb), as a person trusting it would."""
        nssdb = self.home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
        subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "datamancy-caddy-local", "-t", "C,,",
                        "-i", str(root_ca)], check=True)

    def keep_steps_in(self, out_dir: Path) -> None:
        """Where the next steps' screenshots go (a browser kept open from one test to the next)."""
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def url(self, host: str, path: str = "/") -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}.{self.domain}{port}{path}"

    # --- steps ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, label: str):
        """One thing a person does; the page is kept after it, whether it worked or not."""
        self.steps += 1
        stem = f"{self.steps:02d}-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}"
        try:
            yield
        finally:
            self.capture(stem)

    def capture(self, stem: str) -> None:
        try:
            self.driver.save_screenshot(str(self.out_dir / f"{stem}.png"))
            (self.out_dir / f"{stem}.html").write_text(
                f"<!-- {self.driver.current_url} -->\n{self.driver.page_source}")
        except WebDriverException as error:  # a crashed browser still leaves the other steps' pages
            (self.out_dir / f"{stem}.error.txt").write_text(str(error))

    # --- what a person does ---------------------------------------------------------------------------------

    def open(self, url: str) -> None:
        # Chromium aborts a load when the host's interfaces change (Docker adding a veth for any container on
        # this machine): a person would press Reload, and so does this, a few times.
        for _attempt in range(4):
            self.driver.get(url)
            if "ERR_NETWORK_CHANGED" not in self.driver.page_source:
                return
            time.sleep(1)

    def wait(self, css: str, timeout: float = 30):
        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def wait_clickable(self, css: str, timeout: float = 30):
        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css)))

    def wait_url(self, prefix: str, timeout: float = 60) -> str:
        try:
            WebDriverWait(self.driver, timeout).until(lambda d: d.current_url.startswith(prefix))
        except TimeoutException as error:
            raise AssertionError(f"still on {self.driver.current_url}, expected {prefix}") from error
        return self.driver.current_url

    def _wait_for_page(self, timeout: float) -> WebDriverWait:
        # A page that renders itself (React, Next.js) replaces its body while loading: read it again.
        return WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))

    def wait_text(self, text: str, timeout: float = 30) -> None:
        try:
            self._wait_for_page(timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)
        except TimeoutException as error:
            raise AssertionError(f"{text!r} not on {self.driver.current_url}") from error

    def wait_any_text(self, *texts: str, timeout: float = 30) -> str:
        """The first of ``texts`` the page shows (pages that differ by state, such as a first visit)."""
        try:
            return self._wait_for_page(timeout).until(
                lambda d: next((t for t in texts if t in d.find_element(By.TAG_NAME, "body").text), None))
        except TimeoutException as error:
            raise AssertionError(f"none of {texts} on {self.driver.current_url}") from error

    def type(self, css: str, text: str) -> None:
        """Type into a field and check it holds what was typed: a page still rendering (React) can reset a field
        under the keystrokes, and a person would see it and type again."""
        for _attempt in range(3):
            field = self.wait(css)
            field.clear()
            field.send_keys(text)
            if field.get_attribute("value") == text:
                return
            time.sleep(1)
        raise AssertionError(f"{css} on {self.driver.current_url} does not keep what was typed")

    def click(self, css: str, timeout: float = 30) -> None:
        self.wait_clickable(css, timeout).click()

    def click_text(self, text: str, tag: str = "button", timeout: float = 30) -> None:
        """Click the element a person would read as ``text`` (its visible label)."""
        xpath = f"//{tag}[contains(normalize-space(.), {text!r})]"
        try:
            WebDriverWait(self.driver, timeout).until(
                expected_conditions.element_to_be_clickable((By.XPATH, xpath))).click()
        except TimeoutException as error:
            raise AssertionError(f"no {tag} {text!r} to click on {self.driver.current_url}") from error

    def status(self) -> int:
        """The HTTP status of the page on screen (what the browser's developer tools show)."""
        return self.driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")

    def body(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def close(self) -> None:
        with contextlib.suppress(WebDriverException):
            self.driver.quit()
        shutil.rmtree(self.home, ignore_errors=True)
