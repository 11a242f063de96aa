"""Project and membership services: validation that keeps projects consistent."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.datasets.models import Example
from apps.projects.models import Membership, Project, Role
from apps.projects.services import (
    add_member,
    change_role,
    create_project,
    parse_labels,
    remove_member,
    update_project,
)


def add_example(project, n: int = 0, **fields):
    return Example.objects.create(project=project, external_id=f"e{n}", text=f"text {n}", **fields)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("HAM\nSPAM\n", ["HAM", "SPAM"]),
        ("HAM, SPAM", ["HAM", "SPAM"]),
        (" a \n\n b,c \n", ["a", "b,c"]),
        ("", []),
    ],
)
def test_parse_labels_one_per_line_or_comma_separated(text, labels):
    assert parse_labels(text) == labels


@pytest.mark.django_db
def test_create_project_makes_the_creator_admin(make_user):
    staff = make_user("stafford", is_staff=True)
    project = create_project(
        user=staff, name=" Reviews ", labels=[" NEG", "POS "], description="movie reviews"
    )
    assert project.name == "Reviews"
    assert project.labels == ["NEG", "POS"]
    assert project.created_by == staff
    assert Membership.objects.get(project=project, user=staff).role == Role.ADMIN


@pytest.mark.django_db
def test_create_project_is_for_staff_only(make_user):
    with pytest.raises(PermissionDenied):
        create_project(user=make_user("bob"), name="X", labels=["a", "b"])
    assert not Project.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["only"], "at least two"),
        (["a", "A"], "appears twice"),
        (["a", " "], "cannot be empty"),
        (["a", "x" * 101], "longer than"),
        ("a,b", "must be a list"),
    ],
)
def test_create_project_rejects_bad_labels(make_user, labels, message):
    staff = make_user("stafford", is_staff=True)
    with pytest.raises(ValidationError, match=message):
        create_project(user=staff, name="X", labels=labels)
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_create_project_rejects_unknown_task_type_and_empty_name(make_user):
    staff = make_user("stafford", is_staff=True)
    with pytest.raises(ValidationError, match="task_type"):
        create_project(user=staff, name="X", labels=["a", "b"], task_type="summarization")
    with pytest.raises(ValidationError, match="name"):
        create_project(user=staff, name="  ", labels=["a", "b"])
    assert not Project.objects.exists()
    assert not Membership.objects.exists()


@pytest.mark.django_db
def test_update_project_changes_name_and_description(project):
    update_project(project=project, name="Spam v2", description="new")
    project.refresh_from_db()
    assert (project.name, project.description) == ("Spam v2", "new")


@pytest.mark.django_db
def test_labels_used_by_examples_cannot_be_removed(project):
    add_example(project, gold_label=1)
    with pytest.raises(ValidationError, match="“SPAM” cannot be removed") as info:
        update_project(project=project, labels=["HAM", "OTHER"])
    assert "1 example is labeled" in str(info.value)
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM"]


@pytest.mark.django_db
def test_labels_used_by_examples_cannot_be_reordered(project):
    add_example(project, 0, label=0)
    add_example(project, 1, label=0)
    with pytest.raises(ValidationError, match="moved from position 1 to 2"):
        update_project(project=project, labels=["SPAM", "HAM"])
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM"]


@pytest.mark.django_db
def test_labels_can_be_added_at_the_end_when_in_use(project):
    add_example(project, gold_label=0, label=1)
    update_project(project=project, labels=["HAM", "SPAM", "PROMO"])
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM", "PROMO"]


@pytest.mark.django_db
def test_unused_labels_can_be_renamed_and_removed(project):
    add_example(project, gold_label=0)
    update_project(project=project, labels=["HAM", "JUNK", "OTHER"])
    update_project(project=project, labels=["HAM", "OTHER"])
    project.refresh_from_db()
    assert project.labels == ["HAM", "OTHER"]


@pytest.mark.django_db
def test_rule_votes_pin_every_label(project):
    add_example(project, votes={"external": [1, -1]})
    with pytest.raises(ValidationError, match="rule votes"):
        update_project(project=project, labels=["HAM", "RENAMED"])


@pytest.mark.django_db
def test_task_type_is_fixed_once_examples_exist(project):
    update_project(project=project, task_type="relation_extraction")
    update_project(project=project, task_type="text_classification")
    add_example(project)
    with pytest.raises(ValidationError, match="task type cannot change"):
        update_project(project=project, task_type="relation_extraction")
    project.refresh_from_db()
    assert project.task_type == "text_classification"


@pytest.mark.django_db
def test_failed_update_changes_nothing(project):
    add_example(project, gold_label=1)
    with pytest.raises(ValidationError):
        update_project(project=project, name="Renamed", labels=["HAM"])
    project.refresh_from_db()
    assert project.name == "Spam"


@pytest.mark.django_db
def test_add_member_by_username(project, make_user):
    make_user("bob")
    membership = add_member(project=project, username="bob", role=Role.ANNOTATOR)
    assert membership.role == Role.ANNOTATOR and membership.user.username == "bob"


@pytest.mark.django_db
def test_add_member_finds_username_ignoring_case(project, make_user):
    make_user("Bob")
    assert add_member(project=project, username="bob").user.username == "Bob"


@pytest.mark.django_db
def test_add_unknown_user_is_refused(project):
    with pytest.raises(ValidationError, match="no active user named “ghost”"):
        add_member(project=project, username="ghost")


@pytest.mark.django_db
def test_add_existing_member_is_refused(project, annotator):
    with pytest.raises(ValidationError, match="already a member"):
        add_member(project=project, username="annie", role=Role.ADMIN)
    assert Membership.objects.get(project=project, user=annotator).role == Role.ANNOTATOR


@pytest.mark.django_db
def test_add_member_with_unknown_role_is_refused(project, make_user):
    make_user("bob")
    with pytest.raises(ValidationError, match="Unknown role"):
        add_member(project=project, username="bob", role="owner")
    assert project.memberships.count() == 1


@pytest.mark.django_db
def test_last_admin_cannot_be_demoted(project, admin_user, annotator):
    membership = Membership.objects.get(project=project, user=admin_user)
    with pytest.raises(ValidationError, match="last admin"):
        change_role(membership=membership, role=Role.ANNOTATOR)
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


@pytest.mark.django_db
def test_last_admin_cannot_be_removed(project, admin_user):
    membership = Membership.objects.get(project=project, user=admin_user)
    with pytest.raises(ValidationError, match="last admin"):
        remove_member(membership=membership)
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.django_db
def test_admin_can_step_down_once_another_admin_exists(project, admin_user, annotator):
    promoted = change_role(
        membership=Membership.objects.get(project=project, user=annotator), role=Role.ADMIN
    )
    assert promoted.role == Role.ADMIN
    old = Membership.objects.get(project=project, user=admin_user)
    change_role(membership=old, role=Role.ANNOTATOR)
    remove_member(membership=old)
    assert list(project.memberships.values_list("user__username", "role")) == [("annie", "admin")]


@pytest.mark.django_db
def test_annotators_can_be_removed(project, annotator):
    remove_member(membership=Membership.objects.get(project=project, user=annotator))
    assert not Membership.objects.filter(project=project, user=annotator).exists()


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(project, admin_user, annotator):
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        pytest.skip("row locks need PostgreSQL; SQLite serializes writers anyway")
    second = Membership.objects.get(project=project, user=annotator)
    change_role(membership=second, role=Role.ADMIN)
    first = Membership.objects.get(project=project, user=admin_user)

    def demote(membership):
        try:
            change_role(membership=membership, role=Role.ANNOTATOR)
            return "ok"
        except ValidationError:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(demote, [first, second]))
    assert results == ["ok", "refused"]
    assert project.memberships.filter(role=Role.ADMIN).count() == 1


@pytest.mark.django_db
def test_changing_a_membership_removed_meanwhile_is_a_clear_error(project, annotator):
    membership = Membership.objects.get(project=project, user=annotator)
    Membership.objects.filter(pk=membership.pk).delete()
    with pytest.raises(ValidationError, match="no longer a member"):
        change_role(membership=membership, role=Role.ADMIN)
