"""Live progress in a real browser: htmx polls a running job and stops when it finishes."""

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse

from apps.jobs.models import Job, JobStatus
from apps.jobs.services import launch_job

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("FRUGAL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"  # gitignored


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"jobs-{name}.png"), full_page=True)


@pytest.fixture
def page(live_server):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make install-test)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls between browser steps
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
            )
            context = browser.new_context(base_url=live_server.url)
            context.set_default_timeout(20_000)
            yield context.new_page()
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _log_in(page, user):
    page.goto(reverse("accounts:login"))
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-for-tests-123")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/).*$"))


def test_dashboard_launches_the_selftest_and_shows_it_progress_to_done(
    celery_worker_process, page, project, admin_user, wait_for
):
    _log_in(page, admin_user)
    page.goto(reverse("projects:dashboard", args=[project.pk]))
    page.click("text=Run worker self-test")
    job = wait_for(lambda: Job.objects.first(), what="the launched job's row")
    row = page.locator(f"tr:has(a[href='{reverse('jobs:detail', args=[job.pk])}'])")
    row.locator(".badge.status-succeeded").wait_for()
    assert row.locator(".progress > span").get_attribute("style") == "width: 100%"
    _screenshot(page, "dashboard-fragment")
    fragment = page.locator(f"#project-jobs-{project.pk}")
    assert "every 1s" not in (fragment.get_attribute("hx-trigger") or "")


def test_job_page_shows_live_progress_and_cancels(celery_worker_process, page, project, admin_user):
    job = launch_job(
        kind="selftest", project=project, user=admin_user, params={"steps": 40, "step_seconds": 0.2}
    )
    _log_in(page, admin_user)
    page.goto(reverse("jobs:detail", args=[job.pk]))
    page.wait_for_function(
        "() => { const t = document.querySelector('.job-percent');"
        " return t && parseInt(t.textContent) > 0; }"
    )
    _screenshot(page, "detail-running")
    page.click("#job-status button:has-text('Cancel')")
    page.locator("#job-status .badge.status-cancelled").wait_for()
    assert page.locator("#job-status").get_attribute("hx-trigger") is None
    _screenshot(page, "detail-cancelled")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
