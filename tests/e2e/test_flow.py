"""The whole studio in a real browser: sign up, import, label, train, deploy."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_it_leads_a_fresh_install_to_sign_up_and_creates_a_project(flow):
    page = flow.page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    page.fill("#id_username", "ada")
    page.fill("#id_password1", "correct-horse-battery-e2e")
    page.fill("#id_password2", "correct-horse-battery-e2e")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/projects/$"))
    flow.screenshot("signed-up")
