"""Browser tests: Debian's Chromium driven by Playwright's sync API against pytest-django's
live server.

Never ``playwright install``: the tests use the system browser at ``/usr/bin/chromium``
(``make chromium`` installs it; ``FRUGAL_CHROMIUM`` points elsewhere) and skip with the reason
when it is absent. Screenshots go to ``tests/screenshots/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

CHROMIUM = Path(os.environ.get("FRUGAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
PASSWORD = "pw-for-tests-123"  # tests/conftest.py make_user's default


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make install-test)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are still plain synchronous calls, so Django's guard is lifted.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context and page; ``page.base_url`` is the live server's URL."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Anything the Content-Security-Policy blocks (an inline script without the nonce, an
    # onclick attribute, eval) is reported on the console: a browser test fails on it.
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.csp_violations = violations  # a test may take out one it expects
    yield page
    context.close()
    assert not violations, "blocked by the Content-Security-Policy:\n" + "\n".join(violations)


@pytest.fixture
def login(page, live_server):
    """Log a user in through the real login form: ``login(user)`` returns the page."""

    def log_in(user, password: str = PASSWORD):
        page.goto(reverse("accounts:login"))
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", password)
        page.click("form button[type=submit]")
        page.wait_for_url(re.compile(r"^(?!.*/accounts/login/).*$"))
        return page

    return log_in


@pytest.fixture
def screenshot(request):
    """``screenshot(page, "step")`` saves tests/screenshots/<test name>-<step>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, step: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


DOC_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def shots(screenshot):
    """``shots(page, name)``: desktop and phone-width shots; no page wider than the phone. With
    FRUGAL_DOC_SCREENSHOTS=1 they also go to docs/screenshots/team-<name>-<width>.png."""

    def take(page, name: str) -> None:
        paths = [screenshot(page, f"{name}-desktop")]
        page.set_viewport_size({"width": 390, "height": 844})
        overflow = page.evaluate("document.documentElement.scrollWidth")
        paths.append(screenshot(page, f"{name}-phone"))
        page.set_viewport_size({"width": 1280, "height": 900})
        assert overflow <= 392, f"{name} overflows the phone width: {overflow}px"
        if os.environ.get("FRUGAL_DOC_SCREENSHOTS") == "1":
            DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            for path, width in zip(paths, ("desktop", "phone"), strict=True):
                shutil.copy(path, DOC_SCREENSHOTS / f"team-{name}-{width}.png")

    return take
