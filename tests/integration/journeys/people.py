"""What a person does in the portal, step by step, as the journeys share it (Authelia 4.39's web portal)."""
from __future__ import annotations

import re
import time
from pathlib import Path

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from browser import Browser, totp

ONE_TIME_CODE = re.compile(r"-{20,}\n\n(\S+)\n\n-{20,}")


def one_time_code(notifications: Path, after: float, timeout: float = 30) -> str:
    """The code of the newest mail the filesystem notifier wrote after ``after`` (what a person reads in the mail)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if notifications.exists() and notifications.stat().st_mtime >= after:
            found = ONE_TIME_CODE.findall(notifications.read_text())
            if found:
                return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"no one-time code in {notifications} within {timeout} s")


class Person:
    """One person with one browser: signs in at the portal, registers and uses a TOTP device."""

    def __init__(self, browser: Browser, username: str, password: str):
        self.browser = browser
        self.username = username
        self.role = username
        self.password = password
        self.totp_secret: str | None = None
        self.last_code: str | None = None

    def meets_the_login_form(self, url: str) -> None:
        b = self.browser
        with b.step(f"{self.username} opens {url}"):
            b.open(url)
            b.wait("#username-textfield", 60)
        assert b.driver.current_url.startswith(b.url("auth")), b.driver.current_url

    def signs_in(self) -> None:
        """Name and password, then Sign in; the portal moves on (second factor or the target). A form that stays,
        emptied, is a request the page lost (Chromium aborts one when this host's network changes): a person
        signs in again."""
        b = self.browser
        for attempt in range(3):
            with b.step(f"{self.username} types name and password" + (f" (again, {attempt + 1})" if attempt else "")):
                b.type("#username-textfield", self.username)
                b.type("#password-textfield", self.password)
                b.click("#sign-in-button")
                try:
                    WebDriverWait(b.driver, 30).until(
                        lambda d: not d.find_elements(By.CSS_SELECTOR, "#password-textfield"))
                    return
                except TimeoutException:
                    if "Incorrect username or password" in b.body():
                        raise AssertionError(f"the portal refused {self.username}'s password") from None
        raise AssertionError(f"the portal kept its login form for {self.username}")

    def registers_totp(self, notifications: Path) -> None:
        """From the second-factor page: Register device, the one-time code from the mail, the key shown as text
        (no camera here), the first code from the authenticator."""
        b = self.browser
        with b.step("asks to register a device"):
            b.click("#register-link", timeout=60)
            b.click("#one-time-password-add")
            asked = time.time() - 1
            b.wait("#one-time-code", 60)
        with b.step("types the one-time code from the mail"):
            b.type("#one-time-code", one_time_code(notifications, asked))
            b.click("#dialog-verify")
            b.wait_text("To begin select next", 60)
        with b.step("starts the registration"):
            b.click("#dialog-next")
            toggle = WebDriverWait(b.driver, 30).until(
                expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#qr-toggle")))
            # The switch under the QR code shows the key as text, for an authenticator without a camera.
            b.driver.execute_script("arguments[0].click()", toggle)
            url = b.wait("#secret-url").get_attribute("value")
            self.totp_secret = re.search(r"secret=([A-Z2-7]+)", url).group(1)
        with b.step("confirms with the authenticator's first code"):
            b.click("#dialog-next")
            b.wait("#otp-input")
            self.type_code()
            b.wait_text("Successfully added the One-Time Password", 60)

    def type_code(self) -> None:
        """The authenticator's current code into the focused code field; a code is accepted once, so after a
        used one the next period's code is awaited."""
        code = totp(self.totp_secret)
        while code == self.last_code:
            time.sleep(1)
            code = totp(self.totp_secret)
        self.browser.driver.switch_to.active_element.send_keys(code)
        self.last_code = code

    def passes_totp(self) -> None:
        b = self.browser
        with b.step(f"{self.username} types the authenticator's code"):
            b.wait("#otp-input", 60)
            time.sleep(0.5)
            self.type_code()
