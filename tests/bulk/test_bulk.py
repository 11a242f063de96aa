"""Bulk actions from a search: count, confirmation, bounded size, undo."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.bulk import services
from apps.bulk.models import BulkAction
from apps.datasets.models import Example


@pytest.fixture
def examples(project, admin_user):
    rows = []
    for i in range(6):
        rows.append(
            Example.objects.create(
                project=project,
                external_id=f"e{i}",
                text=("free prize " if i < 4 else "hello ") + str(i),
                split="pool",
            )
        )
    rows[0].gold_label, rows[0].gold_labeled_by = 0, admin_user
    rows[0].save()
    return rows


def test_label_plan_skips_gold_unless_replacing(project, examples):
    plan = services.plan_bulk(project=project, filters={"search": "prize"}, kind="label", value=1)
    assert plan.count == 3 and not plan.too_many
    plan = services.plan_bulk(
        project=project, filters={"search": "prize"}, kind="label", value=1, replace_gold=True
    )
    assert plan.count == 4


def test_apply_and_undo_label(project, admin_user, examples):
    action = services.apply_bulk(
        project=project,
        user=admin_user,
        filters={"search": "prize"},
        kind="label",
        value="1",
        replace_gold=True,
        expected=4,
    )
    assert action.count == 4
    assert set(Example.objects.filter(gold_label=1).values_list("external_id", flat=True)) == {
        "e0",
        "e1",
        "e2",
        "e3",
    }
    # someone relabels one afterwards: undo leaves it
    Example.objects.filter(external_id="e3").update(gold_label=0)
    assert services.undo_bulk(action=action, user=admin_user) == 3
    e0 = Example.objects.get(external_id="e0")
    assert (e0.gold_label, e0.gold_labeled_by) == (0, admin_user)  # the previous gold is back
    assert Example.objects.get(external_id="e1").gold_label is None
    assert Example.objects.get(external_id="e3").gold_label == 0
    with pytest.raises(ValidationError):
        services.undo_bulk(action=action, user=admin_user)


def test_apply_and_undo_split(project, admin_user, examples):
    action = services.apply_bulk(
        project=project, user=admin_user, filters={}, kind="split", value="dev", expected=6
    )
    assert Example.objects.filter(split="dev").count() == 6
    services.undo_bulk(action=action, user=admin_user)
    assert Example.objects.filter(split="pool").count() == 6


def test_refusals_change_nothing(project, admin_user, annotator, examples, settings):
    with pytest.raises(PermissionDenied):
        services.apply_bulk(
            project=project, user=annotator, filters={}, kind="split", value="dev", expected=6
        )
    with pytest.raises(ValidationError, match="changed since"):
        services.apply_bulk(
            project=project, user=admin_user, filters={}, kind="split", value="dev", expected=5
        )
    settings.FRUGAL_BULK_LIMIT = 3
    with pytest.raises(ValidationError, match="More than 3"):
        services.apply_bulk(
            project=project, user=admin_user, filters={}, kind="split", value="dev", expected=3
        )
    for kind, value in (("label", 9), ("split", "train"), ("drop", "x")):
        with pytest.raises(ValidationError):
            services.plan_bulk(project=project, filters={}, kind=kind, value=value)
    assert not Example.objects.filter(split="dev").exists()
    assert not BulkAction.objects.exists()


def test_pages_choose_confirm_run_undo(client, project, admin_user, examples):
    client.force_login(admin_user)
    examples_page = client.get(reverse("datasets:examples", args=[project.pk]) + "?search=prize")
    assert b'id="bulk-link"' in examples_page.content
    url = reverse("bulk:bulk", args=[project.pk])
    assert b"Set the gold label" in client.get(url + "?search=prize").content
    confirm = client.post(
        url, {"search": "prize", "bulk_kind": "label", "bulk_label": "1", "step": "confirm"}
    )
    assert b'id="bulk-count">3 examples' in confirm.content
    assert not Example.objects.filter(gold_label=1).exists()  # nothing before confirming
    done = client.post(
        url,
        {
            "search": "prize",
            "bulk_kind": "label",
            "bulk_label": "1",
            "step": "run",
            "expected": "3",
        },
        follow=True,
    )
    assert b"on 3 examples" in done.content
    assert Example.objects.filter(gold_label=1).count() == 3
    action = BulkAction.objects.get()
    client.post(reverse("bulk:undo", args=[project.pk, action.pk]))
    assert not Example.objects.filter(gold_label=1).exists()
    stale = client.post(
        url,
        {
            "search": "prize",
            "bulk_kind": "label",
            "bulk_label": "1",
            "step": "run",
            "expected": "9",
        },
    )
    assert stale.status_code == 400 and b"changed since" in stale.content


def test_annotators_get_no_bulk(client, project, annotator, examples):
    client.force_login(annotator)
    page = client.get(reverse("datasets:examples", args=[project.pk]))
    assert b'id="bulk-link"' not in page.content
    url = reverse("bulk:bulk", args=[project.pk])
    response = client.post(
        url, {"bulk_kind": "split", "bulk_split": "dev", "step": "run", "expected": "6"}
    )
    assert response.status_code == 403
    assert not Example.objects.filter(split="dev").exists()


def test_filter_label_and_split_are_not_the_action(client, project, admin_user, examples):
    """The selection's ``label``/``split`` filters and the action's label/split are apart."""
    Example.objects.filter(external_id__in=["e4", "e5"]).update(label=1)
    client.force_login(admin_user)
    url = reverse("bulk:bulk", args=[project.pk])
    data = {"label": "1", "split": "pool", "bulk_kind": "split", "bulk_split": "test"}
    confirm = client.post(url, {**data, "step": "confirm"})
    assert b'id="bulk-count">2 examples' in confirm.content
    client.post(url, {**data, "step": "run", "expected": "2"})
    assert set(Example.objects.filter(split="test").values_list("external_id", flat=True)) == {
        "e4",
        "e5",
    }
