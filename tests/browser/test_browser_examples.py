"""The examples browser filters as one types, the URL follows, and Back restores the filter."""

import pytest
from django.urls import reverse

from apps.datasets.models import Example

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
