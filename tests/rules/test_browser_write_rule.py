"""The write-a-rule page in Chromium: the live preview follows typing, switching the kind and the
label, and the page logs no htmx or loading errors (the trigger selectors parse, the icon loads)."""

import pytest
from django.urls import reverse

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_write_a_rule_previews_live_without_console_errors(project, examples, admin_user, login):
    page = login(admin_user)
    console_errors, failed = [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

    page.goto(reverse("rules:new", args=[project.pk]))
    page.fill("#rule-words", "subscribe")
    page.wait_for_selector("#rule-preview dl")
    assert "subscribe" in page.inner_text("#rule-preview").lower()

    # Switching the kind (a radio input) and the label refreshes the preview too.
    page.check("input[name=kind][value=regex]")
    page.fill("#rule-pattern", r"song\b")
    page.wait_for_function(
        "() => document.getElementById('rule-preview').innerText.toLowerCase().includes('song')"
    )
    page.select_option("#rule-label", "0")
    page.wait_for_timeout(400)

    assert not [e for e in console_errors if "htmx" in e or "syntax" in e.lower()], console_errors
    assert failed == [], f"requests that failed: {failed}"
    icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    assert page.request.get(icon).status == 200
