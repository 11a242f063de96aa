"""An annotator labels dev examples with the number keys and undoes with `u`, in Chromium."""

import pytest
from django.urls import reverse

from apps.datasets.models import Example

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def card_example_id(page) -> int:
    return int(page.locator("#label-text").get_attribute("data-example-id"))


def wait_for_progress(page, labeled: int) -> None:
    page.wait_for_function(
        "n => document.getElementById('progress-labeled').textContent.trim() === String(n)",
        arg=labeled,
    )


def test_annotator_labels_with_number_keys_and_undoes_with_u(project, annotator, login, screenshot):
    texts = ["Check out my channel!", "Lovely song <3", "Free gift cards here"]
    for i, text in enumerate(texts):
        Example.objects.create(project=project, external_id=f"d{i}", text=text, split="dev")
    page = login(annotator)
    page.goto(reverse("datasets:label", args=[project.pk]) + "?split=dev")
    screenshot(page, "start")

    first = card_example_id(page)
    page.keyboard.press("2")  # SPAM
    wait_for_progress(page, 1)
    second = card_example_id(page)
    assert second != first

    page.keyboard.press("1")  # HAM
    wait_for_progress(page, 2)
    assert Example.objects.get(pk=first).gold_label == 1
    assert Example.objects.get(pk=second).gold_label == 0
    assert Example.objects.get(pk=second).gold_labeled_by == annotator
    screenshot(page, "labeled-two")

    page.keyboard.press("u")
    wait_for_progress(page, 1)
    assert card_example_id(page) == second  # the undone example is back on screen
    assert Example.objects.get(pk=second).gold_label is None
    assert "Undone" in page.locator("#label-card").inner_text()
    screenshot(page, "after-undo")

    # The page never reloaded: htmx swapped the card each time.
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

    page.keyboard.press("s")  # skip the undone one
    page.wait_for_function(
        "id => document.getElementById('label-text')?.dataset.exampleId !== String(id)",
        arg=second,
    )
    third = card_example_id(page)
    assert third not in {first, second}
    page.keyboard.press("2")
    wait_for_progress(page, 2)
    assert page.locator("#label-done").is_visible()
    assert Example.objects.get(pk=third).gold_label == 1
    screenshot(page, "done")


def test_least_sure_queue_is_labeled_with_the_keys_in_margin_order(
    project, annotator, login, screenshot
):
    """The active-learning queue: the pool's least sure examples first, the order on the page."""
    margins = {"p-sure": 0.8, "p-coin": 0.01, "p-close": 0.1, "p-middle": 0.4}
    ids = {}
    for name, margin in margins.items():
        ids[name] = Example.objects.create(
            project=project,
            external_id=name,
            text=f"pool text {name}",
            split="pool",
            label=1,
            confidence=(1 + margin) / 2,
            margin=margin,
            label_source="model",
        ).pk
    page = login(annotator)
    page.goto(reverse("datasets:label", args=[project.pk]) + "?split=dev&source=least_sure")
    assert card_example_id(page) == ids["p-coin"]
    assert "0.010" in page.locator("#queue-why").inner_text()
    queue = page.locator("#queue-next li").all_inner_texts()
    assert [line.split(" ")[0] for line in queue] == ["p-close", "p-middle", "p-sure"]
    screenshot(page, "least-sure-start")

    page.keyboard.press("1")  # HAM: the coin toss moves into dev with a gold label
    page.wait_for_function(
        "id => document.getElementById('label-text')?.dataset.exampleId === String(id)",
        arg=ids["p-close"],
    )
    coin = Example.objects.get(pk=ids["p-coin"])
    assert (coin.split, coin.gold_label) == ("dev", 0)
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "least-sure-phone")
