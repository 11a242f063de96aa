"""The training dashboard in headless Chromium: an admin runs rounds, sees the plots grow,
finalizes, and downloads the labels the export serves."""

import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from apps.training.models import Round, RoundStatus
from tests.browser import conftest as browser_fixtures

# The browser fixtures of tests/browser (Chromium, a page on the live server, log in, screenshots).
browser = browser_fixtures.browser
page = browser_fixtures.page
login = browser_fixtures.login
screenshot = browser_fixtures.screenshot
shots = browser_fixtures.shots

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.needs_data]


@pytest.fixture
def eager_jobs(settings):
    """Jobs run in the web process when their transaction commits (no worker needed)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


def _points(view) -> list[int]:
    return [
        int(n)
        for n in view.locator("svg.linechart").evaluate_all(
            "nodes => nodes.map(n => n.dataset.points)"
        )
    ]


def test_admin_runs_rounds_from_the_dashboard_and_the_plots_gain_points(
    transactional_db,
    youtube_project,
    admin_user,
    login,
    page,
    screenshot,
    shots,
    eager_jobs,
):
    youtube_project.settings["prboost"]["use_imported_votes"] = False
    youtube_project.save(update_fields=["settings"])
    login(admin_user)
    page.goto(f"/projects/{youtube_project.pk}/training/")
    page.get_by_role("button", name="Run round").click()
    page.wait_for_selector("#training-dashboard .badge.status-succeeded", timeout=120_000)
    page.wait_for_selector("svg.linechart")
    first = _points(page)
    assert first and all(n >= 1 for n in first)
    screenshot(page, "after-round-1")
    page.get_by_role("button", name="Run round").click()
    page.wait_for_function(
        "() => document.querySelector('.training-stats .stat').textContent.trim() === '2'",
        timeout=120_000,
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('svg.linechart')]"
        ".every(n => Number(n.dataset.points) > 0)"
    )
    second = _points(page)
    assert all(b > a for a, b in zip(first, second)), (first, second)
    assert re.search(r"100%", page.locator("#training-dashboard").inner_text())
    screenshot(page, "after-round-2")
    assert (
        Round.objects.filter(
            project=youtube_project, status__in=[RoundStatus.REVIEW, RoundStatus.COMPLETE]
        ).count()
        == 2
    )
    # Finalize asks first: declining launches nothing, accepting finalizes.
    from apps.jobs.models import Job

    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    jobs_before = Job.objects.filter(project=youtube_project).count()
    page.once("dialog", decline)
    page.get_by_role("button", name="Finalize").click()
    page.wait_for_timeout(500)
    assert asked and asked[0].startswith("Finalize?")
    assert Job.objects.filter(project=youtube_project).count() == jobs_before
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Finalize").click()
    page.wait_for_function(
        "() => /Finalize labels[\\s\\S]*Succeeded/i"
        ".test(document.querySelector('#training-dashboard').innerText)",
        timeout=120_000,
    )
    # "Where it disagrees" fills after finalize (issue 14): its predictions reach dev and test
    # (cross-fitted on dev), and the pool's least sure examples wait in the labeling queue.
    page.goto(reverse("datasets:disagreements", args=[youtube_project.pk]))
    reasons = page.locator(".disagreements-table tbody tr td:nth-child(2)").all_inner_texts()
    assert "disagrees with gold" in reasons, page.locator("#examples-results").inner_text()
    shots(page, "disagreements")
    page.locator("#least-sure-link").click()
    page.wait_for_selector("#queue-why")
    assert "Least sure first" in page.locator("#queue-why").inner_text()
    assert page.locator("#queue-next li").count() >= 1
    # The rounds' suggestions wait on the review screen.
    page.goto(f"/projects/{youtube_project.pk}/rules/review/")
    assert page.get_by_role("button", name=re.compile("Accept")).is_visible()
    screenshot(page, "suggestions")
    page.goto(f"/projects/{youtube_project.pk}/")
    with page.expect_download() as download:
        page.get_by_role("link", name="JSONL", exact=True).click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    pool = [row for row in rows if row["split"] == "pool"]
    assert len(pool) == youtube_project.examples.filter(split="pool").count()
    assert all(row["source"] == "model" and row["version"] == "prboost round 2" for row in pool)
    assert all(row["label_name"] in ("HAM", "SPAM") and 0 <= row["confidence"] <= 1 for row in pool)
    screenshot(page, "after-export")
