"""In Chromium, under the Content-Security-Policy: the API docs render, and a locked-out login
says when to try again. (The ``page`` fixture fails a test on any CSP violation.)"""

import pytest
from django.urls import reverse

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_and_redoc_render_under_the_policy(login, make_user):
    page = login(make_user("reader"))
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock-tag", timeout=20_000)
    assert "Frugal API" in page.content()
    assert not page.csp_violations
    page.goto("/api/redoc/")
    page.wait_for_selector("text=Frugal API", timeout=20_000)
    # Redoc's "powered by" logo comes from its CDN: blocked, and nothing else is.
    page.csp_violations[:] = [v for v in page.csp_violations if "cdn.redoc.ly" not in v]


def test_a_locked_out_login_says_when_to_try_again(page, make_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    make_user("victim")
    for _ in range(2):
        page.goto(reverse("accounts:login"))
        page.fill("input[name=username]", "victim")
        page.fill("input[name=password]", "wrong password")
        page.click("form button[type=submit]")
    page.wait_for_selector("text=Too many failed attempts; try again in 15 minutes.")
