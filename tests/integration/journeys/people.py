"""What a person does, step by step, as the journeys share it: Authelia 4.39's portal, Open WebUI, LAM."""
from __future__ import annotations

import base64
import re
import time
from pathlib import Path

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

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

    def signs_in_to_open_webui(self) -> None:
        """From Open WebUI's own sign-in page: Continue with Authelia, the portal's consent once, the chat."""
        b = self.browser
        with b.step("Open WebUI offers its sign-in"):
            b.wait_any_text("Continue with Authelia", "Get started", timeout=60)
            if "Get started" in b.body():
                b.click_text("Get started")
            b.click_text("Continue with Authelia", timeout=60)
        with b.step("the portal asks for consent, once"):
            WebDriverWait(b.driver, 60).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#openid-consent-accept, #chat-input"))
            if b.driver.find_elements(By.CSS_SELECTOR, "#openid-consent-accept"):
                assert "Open WebUI" in b.body()
                b.click("#openid-consent-accept")
        with b.step("Open WebUI's chat"):
            b.wait_url(b.url("open-webui"), 60)
            b.wait("#chat-input", 60)

    def chats(self, question: str) -> None:
        """Types a question into Open WebUI's chat and sends it (the model Open WebUI preselects)."""
        b = self.browser
        with b.step(f"asks {question!r}"):
            if "Okay, Let's Go!" in b.body():  # the release notes a first visit may show
                b.click_text("Okay, Let's Go!")
            box = b.wait("#chat-input", 60)
            box.click()
            box.send_keys(question)
            time.sleep(0.3)
            box.send_keys(Keys.ENTER)

    def signs_out_at_the_portal(self) -> None:
        b = self.browser
        with b.step(f"{self.username} signs out at the portal"):
            b.open(b.url("auth"))
            b.click("#logout-button", timeout=60)
            b.wait("#username-textfield", 60)

    # --- LAM (LDAP Account Manager 8.3), as the administrator uses it --------------------------------------------

    def signs_in_to_lam(self, directory_admin_password: str) -> None:
        """LAM's own login past the portal: LAM binds as the directory's administrator (the README: its password
        is in the store)."""
        b = self.browser
        with b.step("LAM's own login, past the portal"):
            b.wait_url(b.url("lam"), 60)
            b.wait("input[name=passwd]", 60)
        with b.step("signs in to LAM"):
            b.type("input[name=passwd]", directory_admin_password)
            b.click("button[name=checklogin]")
            b.wait("#btn_new", 60)

    def creates_a_user_in_lam(self, uid: str, given_name: str, surname: str, mail: str, password: str) -> None:
        """Users > New user: name, mail, Set password, Save."""
        b = self.browser
        with b.step("opens New user"):
            b.open(b.url("lam", "/lam/templates/lists/list.php?type=user"))
            b.click("#btn_new", timeout=60)
            b.wait("#uid", 60)
        with b.step(f"fills in {uid}"):
            Select(b.wait("#accountContainerRDN")).select_by_visible_text("uid")
            b.type("#uid", uid)
            b.type("#givenName", given_name)
            b.type("#sn", surname)
            b.type("#cn_0", f"{given_name} {surname}")
            b.type("#mail_0", mail)
        with b.step("sets the password"):
            b.click("#btn_accountContainerPassword")
            b.type("#newPassword1", password)
            b.type("#newPassword2", password)
            b.click("#btn_changePwdOk")
            # LAM confirms that the password is stored with the account.
            b.click(".swal2-confirm")
        with b.step("saves the account"):
            b.click("#btn_accountContainerSaveAccount")
            b.wait_text("Account was created successfully.", 60)

    def adds_to_group_in_lam(self, member_dn: str, group: str, groups_dn: str) -> None:
        """Tools > Tree view: the group's entry, one more `member` value, Save (free LAM has no group module for
        groupOfNames, the directory's kind of group)."""
        b = self.browser
        with b.step("opens the tree view"):
            b.open(b.url("lam", "/lam/templates/tools/treeView.php"))
            node = base64.b64encode(groups_dn.encode()).decode()
            b.click(f"li[id='{node}'] > i.jstree-ocl", timeout=60)
        with b.step(f"opens group {group}"):
            b.click_text(f"cn={group}", tag="a")
            b.wait("input.lam-attr-member", 60)
        with b.step(f"adds {member_dn} as a member and saves"):
            before = len(b.driver.find_elements(By.CSS_SELECTOR, "input.lam-attr-member"))
            b.driver.find_elements(By.CSS_SELECTOR, "#attributeList_member a[onclick*='addValue']")[-1].click()
            WebDriverWait(b.driver, 10).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.lam-attr-member")) == before + 1)
            b.driver.find_elements(By.CSS_SELECTOR, "input.lam-attr-member")[-1].send_keys(member_dn)
            b.click("#btn_savebutton")
            b.wait_text("All changes were successful.", 60)
