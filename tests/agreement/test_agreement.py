"""Overlap labeling: k answers make gold, disagreements wait for an admin, agreement figures."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.agreement import selectors, services
from apps.agreement.models import AnnotatorLabel
from apps.datasets.models import Example
from apps.datasets.services import GoldLabelConflict
from apps.projects.models import Membership, Role


@pytest.fixture
def bob(project, make_user):
    user = make_user("bob")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def examples(project):
    return [
        Example.objects.create(project=project, external_id=f"e{i}", text=f"text {i}", split="dev")
        for i in range(4)
    ]


def test_k1_is_the_default_and_labeling_writes_gold_directly(client, project, annotator, examples):
    assert services.overlap_for(project=project) == 1
    client.force_login(annotator)
    url = reverse("datasets:label", args=[project.pk])
    client.get(url)
    shown = client.session["label_current"][f"{project.pk}:dev:split"]
    client.post(url, {"split": "dev", "example_id": shown, "label": "1"})
    assert Example.objects.get(pk=shown).gold_label == 1
    assert not AnnotatorLabel.objects.exists()


def test_two_agreeing_answers_make_gold(project, admin_user, annotator, bob, examples):
    services.set_overlap(project=project, k=2, user=admin_user)
    example = examples[0]
    first = services.record_label(project=project, example=example, user=annotator, label=1)
    assert first.status == "recorded"
    example.refresh_from_db()
    assert example.gold_label is None
    second = services.record_label(project=project, example=example, user=bob, label=1)
    assert second.status == "gold"
    example.refresh_from_db()
    assert example.gold_label == 1 and example.gold_labeled_by == bob


def test_disagreement_waits_for_an_admin(project, admin_user, annotator, bob, examples):
    services.set_overlap(project=project, k=2, user=admin_user)
    example = examples[0]
    services.record_label(project=project, example=example, user=annotator, label=0)
    outcome = services.record_label(project=project, example=example, user=bob, label=1)
    assert outcome.status == "conflict"
    assert selectors.conflict_ids(project=project, k=2) == [example.pk]
    with pytest.raises(PermissionDenied):
        services.adjudicate(project=project, example=example, label=1, user=bob)
    services.adjudicate(project=project, example=example, label=1, user=admin_user)
    example.refresh_from_db()
    assert example.gold_label == 1
    assert selectors.conflict_ids(project=project, k=2) == []
    with pytest.raises(GoldLabelConflict):
        services.record_label(project=project, example=example, user=admin_user, label=0)


def test_pool_examples_move_when_they_become_gold(project, admin_user, annotator, bob):
    services.set_overlap(project=project, k=2, user=admin_user)
    example = Example.objects.create(project=project, external_id="p", text="t", split="pool")
    services.record_label(project=project, example=example, user=annotator, label=0, split="test")
    example.refresh_from_db()
    assert example.split == "pool"
    services.record_label(project=project, example=example, user=bob, label=0, split="test")
    example.refresh_from_db()
    assert (example.split, example.gold_label) == ("test", 0)
    # Undo by the one who completed it takes the gold label back, split included.
    services.undo_last_vote(project=project, user=bob)
    example.refresh_from_db()
    assert (example.split, example.gold_label) == ("pool", None)
    # The other annotator's undo cannot touch gold set by an admin.
    services.adjudicate(project=project, example=example, label=1, user=admin_user)
    with pytest.raises(GoldLabelConflict):
        services.undo_last_vote(project=project, user=annotator)
    example.refresh_from_db()
    assert example.gold_label == 1


def test_candidates_skip_own_and_full_examples(project, admin_user, annotator, bob, examples):
    services.set_overlap(project=project, k=2, user=admin_user)
    services.record_label(project=project, example=examples[0], user=annotator, label=0)
    services.record_label(project=project, example=examples[1], user=annotator, label=0)
    services.record_label(project=project, example=examples[1], user=bob, label=1)  # conflict
    mine = selectors.overlap_candidates(
        project=project, user=annotator, split="dev", from_pool=False, k=2
    )
    bobs = selectors.overlap_candidates(
        project=project, user=bob, split="dev", from_pool=False, k=2
    )
    assert set(mine.values_list("external_id", flat=True)) == {"e2", "e3"}
    assert set(bobs.values_list("external_id", flat=True)) == {"e0", "e2", "e3"}


def test_lowering_k_turns_agreeing_answers_into_gold(project, admin_user, annotator, examples):
    services.set_overlap(project=project, k=3, user=admin_user)
    services.record_label(project=project, example=examples[0], user=annotator, label=1)
    assert services.set_overlap(project=project, k=1, user=admin_user) == 1
    examples[0].refresh_from_db()
    assert examples[0].gold_label == 1


def test_overlap_is_validated_and_admin_only(project, admin_user, annotator):
    for bad in (0, 11, "2", True):
        with pytest.raises(ValidationError):
            services.set_overlap(project=project, k=bad, user=admin_user)
    with pytest.raises(PermissionDenied):
        services.set_overlap(project=project, k=2, user=annotator)
    assert services.overlap_for(project=project) == 1


def test_agreement_report(project, admin_user, annotator, bob, examples):
    services.set_overlap(project=project, k=2, user=admin_user)
    answers = [(0, 0), (1, 1), (0, 1), (1, 1)]
    for example, (a, b) in zip(examples, answers, strict=True):
        services.record_label(project=project, example=example, user=annotator, label=a)
        services.record_label(project=project, example=example, user=bob, label=b)
    report = selectors.agreement_report(project=project)
    assert report["answers"] == 8 and report["multi"] == 4
    import krippendorff
    import numpy as np

    expected = krippendorff.alpha(
        reliability_data=np.array([[0, 1, 0, 1], [0, 1, 1, 1]], dtype=float),
        level_of_measurement="nominal",
    )
    assert report["alpha"] == pytest.approx(expected)
    rows = {row["username"]: row for row in report["per_annotator"]}
    assert rows["annie"]["pair_kappa"] == pytest.approx(0.5)
    assert rows["bob"]["gold_n"] == 3  # three agreed; the conflict has no gold yet
    assert rows["bob"]["gold_agree"] == 1.0
    assert [row["name"] for row in report["per_label"]] == ["HAM", "SPAM"]


def test_report_without_answers_is_empty(project):
    report = selectors.agreement_report(project=project)
    assert report["alpha"] is None and report["per_annotator"] == []


def test_label_page_with_overlap_hands_out_unlabeled_examples(
    client, project, admin_user, annotator, bob, examples
):
    services.set_overlap(project=project, k=2, user=admin_user)
    url = reverse("datasets:label", args=[project.pk])
    client.force_login(annotator)
    seen = set()
    for _ in range(4):
        response = client.get(url)
        assert b"needs 2 labels" in response.content
        shown = client.session["label_current"][f"{project.pk}:dev:split"]
        seen.add(shown)
        client.post(url, {"split": "dev", "example_id": shown, "label": "0"})
    assert len(seen) == 4
    assert b"Nothing left to label" in client.get(url).content
    assert not Example.objects.filter(gold_label__isnull=False).exists()
    # u undoes the newest answer and shows that example again
    client.post(url, {"split": "dev", "action": "undo"})
    assert AnnotatorLabel.objects.filter(user=annotator).count() == 3


def test_conflicts_page_decides(client, project, admin_user, annotator, bob, examples):
    services.set_overlap(project=project, k=2, user=admin_user)
    services.record_label(project=project, example=examples[0], user=annotator, label=0)
    services.record_label(project=project, example=examples[0], user=bob, label=1)
    client.force_login(admin_user)
    url = reverse("agreement:conflicts", args=[project.pk])
    page = client.get(url)
    assert b"annie" in page.content and b"bob" in page.content
    response = client.post(
        url, {"example_id": examples[0].pk, "label": "1"}, HTTP_HX_REQUEST="true"
    )
    assert b"No conflicts to decide" in response.content
    examples[0].refresh_from_db()
    assert examples[0].gold_label == 1
    bad = client.post(url, {"example_id": examples[1].pk, "label": "7"}, HTTP_HX_REQUEST="true")
    assert b"out of range" in bad.content


def test_agreement_pages_are_admin_only(client, project, annotator):
    client.force_login(annotator)
    assert client.get(reverse("agreement:agreement", args=[project.pk])).status_code == 403
    response = client.post(reverse("agreement:overlap", args=[project.pk]), {"k": "3"})
    assert response.status_code == 403
    assert services.overlap_for(project=project) == 1


def test_overlap_form(client, project, admin_user):
    client.force_login(admin_user)
    url = reverse("agreement:overlap", args=[project.pk])
    client.post(url, {"k": "3"})
    assert services.overlap_for(project=project) == 3
    response = client.post(url, {"k": "zero"}, follow=True)
    assert b"whole number" in response.content
    assert services.overlap_for(project=project) == 3
    page = client.get(reverse("agreement:agreement", args=[project.pk]))
    assert page.status_code == 200 and b"Krippendorff" in page.content


def test_api_answers_of_annotators_count_as_one_of_k(client, project, admin_user, annotator, bob):
    example = Example.objects.create(project=project, external_id="a", text="t", split="dev")
    services.set_overlap(project=project, k=2, user=admin_user)
    url = f"/api/v1/projects/{project.pk}/examples/{example.pk}/"
    client.force_login(annotator)
    response = client.patch(url, {"gold_label": 1}, content_type="application/json")
    assert response.status_code == 200 and response.json()["gold_label"] is None
    client.force_login(bob)
    response = client.patch(url, {"gold_label": 1}, content_type="application/json")
    assert response.json()["gold_label"] == 1
    assert AnnotatorLabel.objects.filter(example=example).count() == 2
