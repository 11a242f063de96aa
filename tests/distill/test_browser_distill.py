"""The distillation page in headless Chromium: an admin launches a distillation, sees the
comparison table and plot, then finds the student's predictions in the examples browser."""

import re

import pytest

from apps.distill.models import Prediction
from tests.browser import conftest as browser_fixtures

browser = browser_fixtures.browser
page = browser_fixtures.page
login = browser_fixtures.login
screenshot = browser_fixtures.screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_distills_and_sees_the_comparison_and_the_predictions(
    transactional_db, spam_project, admin_user, login, page, screenshot, settings, tiny_encoder
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the job runs in the web process on commit
    settings.FRUGAL_DISTILL_ENCODER = tiny_encoder
    login(admin_user)
    page.goto(f"/projects/{spam_project.pk}/distill/")
    assert page.get_by_text("No serving student yet.").is_visible()
    page.fill("input[name=layers]", "1")
    page.fill("input[name=epochs]", "2")
    page.get_by_role("button", name="Distill").click()
    page.wait_for_selector("table.distill-table", timeout=180_000)
    table = page.locator("table.distill-table").inner_text()
    for name in ("hard CE", "KD", "label smoothing", "PTLoss"):
        assert name in table
    assert page.locator("svg.barchart rect").count() == 8  # dev and test bar per loss
    assert page.locator("tr.serving").count() == 1
    screenshot(page, "comparison")

    page.goto(f"/projects/{spam_project.pk}/data/examples/")
    cells = page.locator("td.student").all_inner_texts()
    assert cells and all(re.fullmatch(r"(HAM|SPAM) \(\d\.\d\d\)", c) for c in cells)
    page.select_option("select[name=student_label]", "1")
    page.locator("#example-filters button[type=submit]").click()
    page.wait_for_function(
        "() => /student_label=1/.test(location.search) && [...document.querySelectorAll("
        "'td.student')].every(c => c.textContent.startsWith('SPAM'))"
    )
    spam_cells = page.locator("td.student").all_inner_texts()
    n_spam = Prediction.objects.filter(project=spam_project, label=1).count()
    assert len(spam_cells) == min(n_spam, 50)  # one page
    assert all(c.startswith("SPAM") for c in spam_cells)
    screenshot(page, "examples-filtered")
