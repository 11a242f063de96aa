"""Pairwise annotation and the re-judgement queue in Chromium, with the keyboard: left/right/tie
and undo; confirm/flip/discard, and the flipped pair is in the next weight run's validation set."""

import pytest
from django.urls import reverse

from apps.alignment import services
from apps.alignment.models import Choice, PairJudgement, PreferencePair, Rejudgement
from apps.alignment.selectors import weighted_pairs
from tests.alignment.conftest import make_pairs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def card_pair(page, card: str) -> str:
    return page.locator(f"#{card}").get_attribute("data-pair-id")


def wait_for_other(page, card: str, pair_id: str) -> None:
    page.wait_for_function(
        "([card, id]) => document.getElementById(card).dataset.pairId !== id", arg=[card, pair_id]
    )
    page.wait_for_timeout(100)


def test_pairwise_annotation_with_keys(pref_project, pref_annotator, login, screenshot):
    make_pairs(pref_project, pool=6, dev=0, test=0)
    page = login(pref_annotator)
    page.goto(reverse("alignment:annotate", args=[pref_project.pk]))
    screenshot(page, "start")
    first = card_pair(page, "annotate-card")
    pair = PreferencePair.objects.get(pk=first)
    swapped = services.shown_swapped(user_id=pref_annotator.pk, pair_id=pair.pk)
    left_text = page.inner_text("#response-left")
    assert left_text == (pair.rejected if swapped else pair.chosen)
    assert pair.prompt.split("\n")[0] in page.inner_text(".pair-prompt")

    page.keyboard.press("ArrowLeft")  # left is better
    wait_for_other(page, "annotate-card", first)
    j = PairJudgement.objects.get(pair=pair, user=pref_annotator)
    assert j.choice == (Choice.REJECTED if swapped else Choice.CHOSEN)
    assert "1</span> of 6" in page.inner_html("#annotate-card")

    second = card_pair(page, "annotate-card")
    page.keyboard.press("t")
    wait_for_other(page, "annotate-card", second)
    assert PairJudgement.objects.get(pair_id=second, user=pref_annotator).choice == Choice.TIE

    third = card_pair(page, "annotate-card")
    page.keyboard.press("2")
    wait_for_other(page, "annotate-card", third)
    page.keyboard.press("u")  # undo the last answer: the third pair comes back
    page.wait_for_function(
        "id => document.getElementById('annotate-card').dataset.pairId === id", arg=third
    )
    assert "Undone" in page.inner_text("#annotate-notice")
    assert not PairJudgement.objects.filter(pair_id=third, user=pref_annotator).exists()
    page.keyboard.press("s")
    wait_for_other(page, "annotate-card", third)
    assert PairJudgement.objects.get(pair_id=third, user=pref_annotator).choice == Choice.SKIP
    screenshot(page, "after-undo")


def test_rejudge_queue_with_keys_and_the_flip_reaches_the_next_runs_validation(
    pref_project, pref_annotator, pref_admin, login, screenshot, fake_encoder, monkeypatch
):
    pairs = make_pairs(pref_project, pool=30, dev=10, test=0)
    for i, p in enumerate(pairs[:30]):  # weights as a run would leave them; p0 lowest
        PreferencePair.objects.filter(pk=p.pk).update(weight=0.01 * (i + 1), stage1_weight=0.5)
    page = login(pref_annotator)
    page.goto(reverse("alignment:rejudge", args=[pref_project.pk]))
    screenshot(page, "queue")
    first = card_pair(page, "rejudge-card")
    assert first == str(pairs[0].pk)
    assert page.inner_text("#rejudge-chosen") == pairs[0].chosen

    page.keyboard.press("f")
    wait_for_other(page, "rejudge-card", first)
    assert "Flipped pair p0" in page.inner_text("#rejudge-notice")
    second = card_pair(page, "rejudge-card")
    assert second == str(pairs[1].pk)
    page.keyboard.press("c")
    wait_for_other(page, "rejudge-card", second)
    third = card_pair(page, "rejudge-card")
    page.keyboard.press("d")
    wait_for_other(page, "rejudge-card", third)
    assert "flipped" not in page.inner_text("#rejudge-card").lower().replace("flipped pair", "")

    flipped = PreferencePair.objects.get(pk=first)
    assert (flipped.chosen, flipped.rejected) == (pairs[0].rejected, pairs[0].chosen)
    assert flipped.split == "dev"
    assert PreferencePair.objects.get(pk=second).split == "dev"
    assert PreferencePair.objects.get(pk=third).status == "discarded"
    assert Rejudgement.objects.count() == 3

    # the admin sees how many of the re-judged pairs were flipped
    page.context.clear_cookies()
    page = login(pref_admin)
    page.goto(reverse("alignment:rejudge", args=[pref_project.pk]))
    assert page.inner_text("#rejudge-flipped") == "1"

    # the next weight run validates on the flipped pair (as flipped) and trains without the
    # discarded one
    seen = {}
    real = services._training_pairs

    def spy(project):
        pool, dev = real(project)
        seen["pool"], seen["dev"] = pool, dev
        return pool, dev

    monkeypatch.setattr(services, "_training_pairs", spy)
    out = services.compute_weights(
        project=pref_project,
        params={
            "weights": "features",
            "method": "penalty",
            "stage2": True,
            "reward_model": "head",
            "members": 2,
        },
    )
    dev = {p.pk: p for p in seen["dev"]}
    assert int(first) in dev and dev[int(first)].chosen == pairs[0].rejected
    assert int(second) in dev
    assert int(third) not in {p.pk for p in seen["pool"]}
    assert out["n_val"] == 12 and out["n_train"] == 27

    # the weights page draws the run: histogram, refinement curve, pairs lowest weight first
    page.goto(reverse("alignment:weights", args=[pref_project.pk]))
    assert page.locator("#weight-histogram rect").count() == 20
    assert page.locator("#refine-curve circle").count() >= 1
    first_row = page.locator("#pairs-table tbody tr").first.inner_text()
    lowest = weighted_pairs(project=pref_project).first()  # ties by id, as the page orders them
    assert lowest.external_id in first_row
    screenshot(page, "weights")
