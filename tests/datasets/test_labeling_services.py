"""Gold labeling services: range checks, moving pool examples into dev/test, undo, no silent
overwrite of someone else's label, and handing different examples to different annotators."""

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError

from apps.datasets import services
from apps.datasets.models import Example
from apps.projects.models import Membership, Project, Role


@pytest.fixture(autouse=True)
def clear_claims():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def pool(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"p{i}", text=f"pool text {i}", split="pool")
        for i in range(5)
    )
    return list(Example.objects.filter(project=project, split="pool"))


@pytest.fixture
def dev(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"d{i}", text=f"dev text {i}", split="dev")
        for i in range(4)
    )
    return list(Example.objects.filter(project=project, split="dev"))


@pytest.fixture
def second_annotator(project, make_user):
    user = make_user("bob")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.mark.django_db
def test_set_gold_label_records_label_author_and_time(project, annotator, dev):
    example = dev[0]
    change = services.set_gold_label(example=example, label=1, user=annotator)
    example.refresh_from_db()
    assert example.gold_label == 1
    assert example.gold_labeled_by == annotator
    assert example.gold_labeled_at is not None
    assert change.previous_label is None and change.label == 1


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [2, -1, "1", 1.0, True, None])
def test_out_of_range_or_non_integer_label_is_refused_and_changes_nothing(
    project, annotator, dev, bad
):
    example = dev[0]
    if bad is None:
        # None clears a label: fine on an unlabeled example, but it cannot move it into dev.
        pool_example = Example.objects.create(project=project, external_id="q", text="t")
        with pytest.raises(ValidationError):
            services.set_gold_label(example=pool_example, label=None, user=annotator, split="dev")
        pool_example.refresh_from_db()
        assert pool_example.split == "pool"
        return
    with pytest.raises(ValidationError):
        services.set_gold_label(example=example, label=bad, user=annotator)
    example.refresh_from_db()
    assert example.gold_label is None and example.gold_labeled_by is None


@pytest.mark.django_db
def test_example_of_another_project_is_refused(project, annotator, dev):
    other = Project.objects.create(name="Other", labels=["A", "B"])
    with pytest.raises(ValidationError, match="does not belong"):
        services.set_gold_label(example=dev[0], label=0, user=annotator, project=other)


@pytest.mark.django_db
def test_non_member_cannot_label(project, outsider, dev):
    with pytest.raises(PermissionDenied):
        services.set_gold_label(example=dev[0], label=0, user=outsider)


@pytest.mark.django_db
def test_pool_example_labeled_into_dev_moves_and_undo_moves_it_back(project, annotator, pool):
    history = []
    example = pool[0]
    change = services.set_gold_label(example=example, label=0, user=annotator, split="dev")
    services.push_history(history, change)
    example.refresh_from_db()
    assert (example.split, example.gold_label) == ("dev", 0)

    undone = services.undo_last_gold_label(project=project, user=annotator, history=history)
    example.refresh_from_db()
    assert undone.example_id == example.pk
    assert (example.split, example.gold_label, example.gold_labeled_by) == ("pool", None, None)
    assert history == []
    assert services.undo_last_gold_label(project=project, user=annotator, history=history) is None


@pytest.mark.django_db
def test_dev_examples_cannot_be_moved_to_another_split(project, annotator, dev):
    with pytest.raises(ValidationError, match="Only pool examples"):
        services.set_gold_label(example=dev[0], label=0, user=annotator, split="test")
    with pytest.raises(ValidationError):
        services.set_gold_label(example=dev[0], label=0, user=annotator, split="nowhere")


@pytest.mark.django_db
def test_undo_walks_back_several_decisions_newest_first(project, annotator, dev):
    history = []
    for example, label in zip(dev[:3], [0, 1, 1]):
        services.push_history(
            history, services.set_gold_label(example=example, label=label, user=annotator)
        )
    # Relabeling one's own label is allowed, and undo restores the earlier own label.
    services.push_history(history, services.set_gold_label(example=dev[2], label=0, user=annotator))
    services.undo_last_gold_label(project=project, user=annotator, history=history)
    dev[2].refresh_from_db()
    assert dev[2].gold_label == 1 and dev[2].gold_labeled_by == annotator
    services.undo_last_gold_label(project=project, user=annotator, history=history)
    services.undo_last_gold_label(project=project, user=annotator, history=history)
    labels = dict(
        Example.objects.filter(pk__in=[e.pk for e in dev]).values_list("pk", "gold_label")
    )
    assert labels == {dev[0].pk: 0, dev[1].pk: None, dev[2].pk: None, dev[3].pk: None}


@pytest.mark.django_db
def test_second_annotator_is_told_instead_of_overwriting(project, annotator, second_annotator, dev):
    example = dev[0]
    services.set_gold_label(example=example, label=1, user=annotator)
    stale = Example.objects.get(pk=example.pk)
    stale.gold_label = None  # what bob's page saw before annie's label landed
    with pytest.raises(services.GoldLabelConflict) as conflict:
        services.set_gold_label(example=stale, label=0, user=second_annotator)
    assert "annie" in conflict.value.message and "SPAM" in conflict.value.message
    example.refresh_from_db()
    assert example.gold_label == 1 and example.gold_labeled_by == annotator


@pytest.mark.django_db
def test_imported_gold_labels_are_not_overwritten_silently(project, annotator, admin_user):
    example = Example.objects.create(
        project=project, external_id="g", text="gold", split="dev", gold_label=0
    )
    with pytest.raises(services.GoldLabelConflict, match="an import"):
        services.set_gold_label(example=example, label=1, user=annotator)
    # On purpose, only an admin may replace it.
    with pytest.raises(PermissionDenied):
        services.set_gold_label(example=example, label=1, user=annotator, overwrite=True)
    services.set_gold_label(example=example, label=1, user=admin_user, overwrite=True)
    example.refresh_from_db()
    assert example.gold_label == 1 and example.gold_labeled_by == admin_user


@pytest.mark.django_db
def test_undo_does_not_clobber_a_label_someone_else_set_since(project, annotator, admin_user, dev):
    history = []
    example = dev[0]
    services.push_history(
        history, services.set_gold_label(example=example, label=1, user=annotator)
    )
    services.set_gold_label(example=example, label=0, user=admin_user, overwrite=True)
    with pytest.raises(services.GoldLabelConflict):
        services.undo_last_gold_label(project=project, user=annotator, history=history)
    example.refresh_from_db()
    assert example.gold_label == 0 and example.gold_labeled_by == admin_user
    assert history == []  # the stale entry is dropped so the next undo can proceed


@pytest.mark.django_db
def test_undo_without_history_clears_the_users_latest_label(project, annotator, dev):
    services.set_gold_label(example=dev[0], label=0, user=annotator)
    services.set_gold_label(example=dev[1], label=1, user=annotator)
    change = services.undo_last_gold_label(project=project, user=annotator)
    assert change.example_id == dev[1].pk
    dev[1].refresh_from_db()
    assert dev[1].gold_label is None
    dev[0].refresh_from_db()
    assert dev[0].gold_label == 0


@pytest.mark.django_db
def test_two_annotators_are_handed_different_examples(project, annotator, second_annotator, dev):
    for _ in range(10):
        cache.clear()
        first = services.next_example_to_label(project=project, user=annotator, split="dev")
        second = services.next_example_to_label(project=project, user=second_annotator, split="dev")
        assert first is not None and second is not None
        assert first.pk != second.pk


@pytest.mark.django_db
def test_next_example_skips_labeled_and_skipped_examples_and_ends(project, annotator, dev):
    services.set_gold_label(example=dev[0], label=0, user=annotator)
    seen = set()
    for _ in range(3):
        example = services.next_example_to_label(
            project=project, user=annotator, split="dev", exclude_ids=seen
        )
        assert example is not None and example.pk != dev[0].pk
        seen.add(example.pk)
    assert seen == {e.pk for e in dev[1:]}
    assert (
        services.next_example_to_label(
            project=project, user=annotator, split="dev", exclude_ids=seen
        )
        is None
    )


@pytest.mark.django_db
def test_next_example_keeps_the_current_one_on_reload(project, annotator, dev):
    first = services.next_example_to_label(project=project, user=annotator, split="dev")
    again = services.next_example_to_label(
        project=project, user=annotator, split="dev", current_id=first.pk
    )
    assert again.pk == first.pk


@pytest.mark.django_db
def test_from_pool_hands_out_pool_examples(project, annotator, pool, dev):
    example = services.next_example_to_label(
        project=project, user=annotator, split="test", from_pool=True
    )
    assert example.split == "pool"
    with pytest.raises(ValidationError):
        services.next_example_to_label(project=project, user=annotator, split="pool")
