"""The examples browser filters as one types, the URL follows, and Back restores the filter."""

import pytest
from django.urls import reverse

from apps.datasets.models import Example
from tests.browser.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def result_texts(page) -> list[str]:
    return page.locator("#examples-results td.example-text").all_inner_texts()


def test_search_filters_results_and_back_restores_the_previous_filter(
    project, annotator, login, screenshot
):
    texts = [
        "guitar lessons for free",
        "my guitar solo <b>video</b>",
        "drum cover of the year",
        "piano and drum duet",
        "nothing musical here",
    ]
    for i, text in enumerate(texts):
        Example.objects.create(project=project, external_id=f"e{i}", text=text)
    page = login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    page.goto(url)
    assert len(result_texts(page)) == 5

    page.fill("#id_search", "guitar")
    page.wait_for_url("**search=guitar**")
    page.wait_for_function("() => document.querySelectorAll('td.example-text').length === 2")
    assert all("guitar" in text for text in result_texts(page))
    # Highlighted, and the user's markup shows as text.
    assert page.locator("td.example-text mark").first.inner_text().lower() == "guitar"
    assert "<b>video</b>" in " ".join(result_texts(page))
    screenshot(page, "guitar")

    page.fill("#id_search", "drum")
    page.wait_for_url("**search=drum**")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('td.example-text'))"
        ".every(td => td.textContent.includes('drum'))"
    )
    assert len(result_texts(page)) == 2

    page.go_back()
    page.wait_for_url("**search=guitar**")
    page.wait_for_function("() => document.getElementById('id_search').value === 'guitar'")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('td.example-text'))"
        ".every(td => td.textContent.includes('guitar'))"
    )
    assert len(result_texts(page)) == 2
    screenshot(page, "back-to-guitar")

    page.go_back()
    page.wait_for_function("() => document.getElementById('id_search').value === ''")
    page.wait_for_function("() => document.querySelectorAll('td.example-text').length === 5")


def test_the_exact_count_and_page_numbers_arrive_after_the_page(
    project, annotator, login, screenshot
):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"e{i}", text=f"comment number {i}")
        for i in range(1_060)
    )
    page = login(annotator)
    page.goto(reverse("datasets:examples", args=[project.pk]))
    page.wait_for_selector("#result-count:has-text('Page 1 of 22')")
    assert "1,060 examples" in page.inner_text("#result-count")
    page.fill("#page-jump-number", "4")
    page.click("form.page-jump button")
    page.wait_for_url("**page=4**")
    page.wait_for_selector("#result-count:has-text('Page 4 of 22')")
    assert result_texts(page)[0] == "comment number 150"
    page.click("nav.pagination a:has-text('Last')")
    page.wait_for_selector("#result-count:has-text('Page 22 of 22')")
    assert result_texts(page)[-1] == "comment number 1059"
    screenshot(page, "last-page")


# The first few elements that reach past the right edge, for the failure message.
WIDER_THAN_THE_SCREEN = """
Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 8)
  .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
"""


@pytest.mark.parametrize("view_name", ["datasets:examples", "datasets:label", "projects:dashboard"])
def test_pages_fit_a_phone_screen(browser, live_server, project, annotator, view_name):
    """At 390 px nothing scrolls sideways, the text column stays readable and "Log out" stays
    on one line."""
    for i in range(5):
        Example.objects.create(
            project=project,
            external_id=f"e{i}",
            text=f"check out my channel, a rather long comment number {i} " * 3,
            split="dev" if i % 2 else "pool",
        )
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, device_scale_factor=2
    )
    page = context.new_page()
    page.goto(reverse("accounts:login"))
    page.fill("input[name=username]", annotator.username)
    page.fill("input[name=password]", "pw-for-tests-123")
    page.click("form button[type=submit]")
    page.wait_for_url("**/projects/**")
    page.goto(reverse(view_name, args=[project.pk]))
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    wide = page.evaluate(WIDER_THAN_THE_SCREEN)
    assert overflow <= 0, f"{view_name} scrolls sideways by {overflow}px at phone width: {wide}"
    logout = page.locator(".topbar button:has-text('Log out')").bounding_box()
    assert logout["height"] < 30  # one line
    shot = SCREENSHOTS / f"phone-{view_name.replace(':', '-')}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    if view_name == "datasets:examples":
        width = page.locator("td.example-text").first.bounding_box()["width"]
        assert width > 250, f"the text column is {width}px wide"
    context.close()
