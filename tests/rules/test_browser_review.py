"""An annotator reviews suggested rules with the keyboard in Chromium: accept, edit with the
live preview, undo; a second annotator is told when the rule was decided first."""

import pytest
from django.urls import reverse

from apps.rules import services
from apps.rules.models import Rule, RuleStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def card_rule_id(page) -> str:
    return page.locator("#review-card").get_attribute("data-rule-id")


def wait_for_other_card(page, rule_id: str) -> None:
    page.wait_for_function(
        "id => document.getElementById('review-card').dataset.ruleId !== id", arg=rule_id
    )
    page.wait_for_timeout(100)  # htmx settles the swapped card


def test_annotator_reviews_with_the_keyboard_edits_live_and_undoes(
    project, suggestions, annotator, login, screenshot
):
    page = login(annotator)
    page.goto(reverse("rules:review", args=[project.pk]))
    screenshot(page, "start")
    first = card_rule_id(page)
    assert first == str(suggestions[0].pk)
    assert "subscribe" in page.inner_text("#rule-description")

    page.keyboard.press("a")
    wait_for_other_card(page, first)
    assert Rule.objects.get(pk=first).status == RuleStatus.ACCEPTED
    assert "1 of 4 reviewed" in page.inner_text("#review-card")

    second = card_rule_id(page)
    page.keyboard.press("e")
    page.fill("input[name=words]", "channel, song")
    page.wait_for_selector("#rule-preview dl")
    assert "4</strong> of 8" in page.inner_html("#rule-preview")
    screenshot(page, "edit-preview")
    page.click("button[name=action][value=accept]:has-text('Save and accept')")
    wait_for_other_card(page, second)
    assert Rule.objects.get(pk=second).definition["words"] == ["channel", "song"]

    third = card_rule_id(page)
    page.keyboard.press("x")
    wait_for_other_card(page, third)
    assert Rule.objects.get(pk=third).status == RuleStatus.REJECTED
    page.keyboard.press("u")
    page.wait_for_function(
        "id => document.getElementById('review-card').dataset.ruleId === id", arg=third
    )
    assert "Undone" in page.inner_text("#review-notice")
    assert Rule.objects.get(pk=third).status == RuleStatus.SUGGESTED
    screenshot(page, "after-undo")


def test_second_annotator_is_told_who_decided_first(
    project, suggestions, annotator, second_annotator, login, screenshot
):
    page = login(second_annotator)
    page.goto(reverse("rules:review", args=[project.pk]))
    shown = card_rule_id(page)
    rule = Rule.objects.get(pk=shown)
    # annie decides the same rule from the API or another screen meanwhile
    services.decide(rule=rule, user=annotator, action="reject", expected_version=rule.version)
    page.keyboard.press("a")
    page.wait_for_selector("#review-notice")
    assert "annie already rejected this rule" in page.inner_text("#review-notice")
    assert Rule.objects.get(pk=shown).status == RuleStatus.REJECTED
    screenshot(page, "told")
