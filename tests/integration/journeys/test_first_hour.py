"""A person's first hour on the README's deployment, in Chromium: the administrator opens LAM, meets the portal's
login form, signs in, registers TOTP through the portal (the one-time code from the notifier's mail, the key shown
as text), passes TOTP and signs in to LAM.

Not yet journeys here (issue 16): a user created through LAM's pages, the user's chat in Open WebUI (a new user
finds no model to choose there: Open WebUI's model access control hides LiteLLM's models from the user role), the
refusal on admin-only UIs, LiteLLM's and KFuncDB's UIs, signing out everywhere.
"""
from __future__ import annotations

import pytest

from .people import Person

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def accounts(readme):
    """Who signs in: the journeys' administrator and user, with the generated initial passwords the README says
    an administrator finds in the store; the administrator's authenticator, kept between the tests."""
    return {"admin": {"uid": readme.admin, "password": readme.secret(f"ldap_user_{readme.admin}_password")},
            "carol": {"uid": readme.user, "password": readme.secret(f"ldap_user_{readme.user}_password")}}


def person(browser, accounts, role) -> Person:
    who = Person(browser, accounts[role]["uid"], accounts[role]["password"])
    who.role = role
    who.totp_secret, who.last_code = accounts[role].get("totp"), accounts[role].get("last")
    return who


def remember(accounts, who: Person) -> None:
    accounts[who.role].update(totp=who.totp_secret, last=who.last_code)


def test_the_admin_signs_in_registers_totp_and_reaches_lam(readme, browsers, accounts):
    browser = browsers("admin")
    admin = person(browser, accounts, "admin")
    admin.meets_the_login_form(browser.url("lam"))
    admin.signs_in()
    with browser.step("the portal asks for a second factor"):
        browser.wait_text("requires two-factor authentication", 60)
    admin.registers_totp(readme.notifications)
    remember(accounts, admin)
    with browser.step("opens LAM again"):
        browser.open(browser.url("lam"))
    admin.passes_totp()
    remember(accounts, admin)
    with browser.step("LAM's own login, past the portal"):
        browser.wait_url(browser.url("lam"), 60)
        browser.wait("input[name=passwd]", 60)
    # LAM binds to the directory as its administrator (README: the directory admin's password is in the store).
    with browser.step("signs in to LAM"):
        browser.type("input[name=passwd]", readme.secret("ldap_admin_password"))
        browser.click("button[name=checklogin]")
        browser.wait("#btn_new", 60)
    assert f"{readme.admin}@stack.localhost" in browser.body()
