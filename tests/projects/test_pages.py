"""Project pages for each role: anonymous, outsider, annotator, admin, staff."""

import pytest
from django.urls import reverse

from apps.datasets.models import Example
from apps.projects.models import Membership, Project, Role

ADMIN_PAGES = ["projects:settings", "projects:members"]
MEMBER_PAGES = ["projects:dashboard"]


def url(name, project):
    return reverse(name, args=[project.pk])


def url_member(name, project, membership):
    return reverse(name, args=[project.pk, membership.pk])


@pytest.mark.django_db
@pytest.mark.parametrize("name", MEMBER_PAGES + ADMIN_PAGES)
def test_anonymous_is_sent_to_login(client, project, name):
    response = client.get(url(name, project))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login") + "?next=")


@pytest.mark.django_db
@pytest.mark.parametrize("name", MEMBER_PAGES + ADMIN_PAGES)
def test_outsider_gets_404(client, project, outsider, name):
    client.force_login(outsider)
    assert client.get(url(name, project)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_annotator_gets_403_on_admin_pages(client, project, annotator, name):
    client.force_login(annotator)
    assert client.get(url(name, project)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("name", MEMBER_PAGES + ADMIN_PAGES)
def test_admin_sees_every_project_page(client, project, admin_user, name):
    client.force_login(admin_user)
    assert client.get(url(name, project)).status_code == 200


@pytest.mark.django_db
def test_superuser_is_admin_of_every_project(client, project, make_user):
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    assert client.get(url("projects:settings", project)).status_code == 200


@pytest.mark.django_db
def test_project_list_shows_only_own_projects_with_role_and_counts(client, project, annotator):
    Project.objects.create(name="Hidden elsewhere", labels=["a", "b"])
    Example.objects.create(project=project, external_id="1", text="hello")
    client.force_login(annotator)
    response = client.get(reverse("projects:list"))
    page = response.content.decode()
    assert "Spam" in page and "Hidden elsewhere" not in page
    (row,) = response.context["projects"]
    assert (row.role, row.example_count, row.member_count) == ("annotator", 1, 2)
    assert reverse("projects:create") not in page


@pytest.mark.django_db
def test_create_page_is_for_staff_only(client, annotator):
    client.force_login(annotator)
    assert client.get(reverse("projects:create")).status_code == 403
    assert client.post(reverse("projects:create"), {"name": "X"}).status_code == 403


@pytest.mark.django_db
def test_staff_creates_project_and_becomes_admin(client, make_user):
    staff = make_user("stafford", is_staff=True)
    client.force_login(staff)
    response = client.post(
        reverse("projects:create"),
        {
            "name": "Reviews",
            "description": "",
            "task_type": "text_classification",
            "labels": "NEG, POS",
        },
    )
    project = Project.objects.get(name="Reviews")
    assert response["Location"] == url("projects:dashboard", project)
    assert project.labels == ["NEG", "POS"]
    assert Membership.objects.get(project=project, user=staff).role == Role.ADMIN


@pytest.mark.django_db
def test_create_with_one_label_shows_error_and_creates_nothing(client, make_user):
    client.force_login(make_user("stafford", is_staff=True))
    response = client.post(
        reverse("projects:create"),
        {"name": "Reviews", "task_type": "text_classification", "labels": "ONLY"},
    )
    assert response.status_code == 400
    assert "at least two labels" in response.content.decode()
    assert not Project.objects.filter(name="Reviews").exists()


@pytest.mark.django_db
def test_dashboard_shows_counts_per_split_and_label_chart(client, project, annotator):
    Example.objects.bulk_create(
        [
            Example(project=project, external_id="p1", split="pool", text="a", label=1),
            Example(project=project, external_id="p2", split="pool", text="b"),
            Example(project=project, external_id="d1", split="dev", text="c", gold_label=1),
            Example(project=project, external_id="d2", split="dev", text="d", gold_label=0),
            Example(project=project, external_id="t1", split="test", text="e"),
        ]
    )
    client.force_login(annotator)
    response = client.get(url("projects:dashboard", project))
    splits = {s["split"]: (s["total"], s["gold"]) for s in response.context["overview"]["splits"]}
    assert splits == {"pool": (2, 0), "dev": (2, 1 + 1), "test": (1, 0)}
    assert response.context["overview"]["gold_distribution"] == [("HAM", 1), ("SPAM", 1)]
    page = response.content.decode()
    assert "<svg" in page and 'class="bar"' in page
    assert reverse("jobs:project_jobs", args=[project.pk]) in page
    # Annotators get no import link; the nav has no admin links for them.
    assert reverse("imports:new", args=[project.pk]) not in page
    assert url("projects:settings", project) not in page


@pytest.mark.django_db
def test_dashboard_nav_has_admin_links_for_admins(client, project, admin_user):
    client.force_login(admin_user)
    page = client.get(url("projects:dashboard", project)).content.decode()
    for link in (
        reverse("imports:new", args=[project.pk]),
        url("projects:settings", project),
        url("projects:members", project),
        reverse("datasets:examples", args=[project.pk]),
        reverse("datasets:label", args=[project.pk]),
    ):
        assert f'href="{link}' in page


@pytest.mark.django_db
def test_settings_save_name_and_add_label(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(
        url("projects:settings", project),
        {
            "name": "Spam filter",
            "description": "d",
            "task_type": "text_classification",
            "labels": "HAM\nSPAM\nPROMO",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.labels) == ("Spam filter", ["HAM", "SPAM", "PROMO"])


@pytest.mark.django_db
def test_settings_refuse_removing_a_label_in_use_with_a_clear_message(client, project, admin_user):
    Example.objects.create(project=project, external_id="1", text="x", gold_label=1)
    client.force_login(admin_user)
    response = client.post(
        url("projects:settings", project),
        {"name": "Spam", "task_type": "text_classification", "labels": "HAM"},
    )
    assert response.status_code == 400
    # One label only: the label-count rule speaks first. With two labels, the in-use rule.
    response = client.post(
        url("projects:settings", project),
        {"name": "Spam", "task_type": "text_classification", "labels": "HAM\nEGGS"},
    )
    assert response.status_code == 400
    assert "“SPAM” cannot be removed, renamed or moved" in response.content.decode()
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM"]


@pytest.mark.django_db
def test_settings_lock_task_type_once_examples_exist(client, project, admin_user):
    Example.objects.create(project=project, external_id="1", text="x")
    client.force_login(admin_user)
    form = client.get(url("projects:settings", project)).context["form"]
    assert form.fields["task_type"].disabled
    client.post(
        url("projects:settings", project),
        {"name": "Spam", "task_type": "relation_extraction", "labels": "HAM\nSPAM"},
    )
    project.refresh_from_db()
    assert project.task_type == "text_classification"


@pytest.mark.django_db
def test_annotator_cannot_post_settings(client, project, annotator):
    client.force_login(annotator)
    response = client.post(
        url("projects:settings", project),
        {"name": "Hacked", "task_type": "text_classification", "labels": "HAM\nSPAM"},
    )
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.name == "Spam"


@pytest.mark.django_db
def test_members_page_adds_member(client, project, admin_user, make_user):
    make_user("bob")
    client.force_login(admin_user)
    response = client.post(
        url("projects:member_add", project), {"username": "bob", "role": "annotator"}
    )
    assert response.status_code == 302
    assert project.memberships.filter(user__username="bob", role="annotator").exists()


@pytest.mark.django_db
def test_members_page_with_htmx_returns_the_region_with_errors(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(
        url("projects:member_add", project),
        {"username": "ghost", "role": "annotator"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<div id="members">') and "no active user named" in body


@pytest.mark.django_db
def test_members_page_changes_role(client, project, admin_user, annotator):
    membership = Membership.objects.get(project=project, user=annotator)
    client.force_login(admin_user)
    client.post(url_member("projects:member_role", project, membership), {"role": "admin"})
    membership.refresh_from_db()
    assert membership.role == "admin"


@pytest.mark.django_db
def test_members_page_refuses_removing_the_last_admin(client, project, admin_user):
    membership = Membership.objects.get(project=project, user=admin_user)
    client.force_login(admin_user)
    response = client.post(url_member("projects:member_remove", project, membership))
    assert response.status_code == 400
    assert "last admin" in response.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.django_db
def test_members_page_removes_annotator(client, project, admin_user, annotator):
    membership = Membership.objects.get(project=project, user=annotator)
    client.force_login(admin_user)
    response = client.post(url_member("projects:member_remove", project, membership))
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.django_db
def test_membership_of_another_project_is_404(client, project, admin_user, make_user):
    other = Project.objects.create(name="Other", labels=["a", "b"])
    foreign = Membership.objects.create(project=other, user=make_user("zed"), role="admin")
    client.force_login(admin_user)
    response = client.post(url_member("projects:member_remove", project, foreign))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


@pytest.mark.django_db
def test_annotator_cannot_change_members(client, project, admin_user, annotator):
    admin_membership = Membership.objects.get(project=project, user=admin_user)
    client.force_login(annotator)
    response = client.post(
        url_member("projects:member_role", project, admin_membership), {"role": "annotator"}
    )
    assert response.status_code == 403
    admin_membership.refresh_from_db()
    assert admin_membership.role == "admin"


@pytest.mark.django_db
def test_admin_who_steps_down_is_sent_to_the_dashboard(client, project, admin_user, annotator):
    Membership.objects.filter(project=project, user=annotator).update(role="admin")
    mine = Membership.objects.get(project=project, user=admin_user)
    client.force_login(admin_user)
    response = client.post(
        url_member("projects:member_role", project, mine),
        {"role": "annotator"},
        HTTP_HX_REQUEST="true",
    )
    assert response["HX-Redirect"] == url("projects:dashboard", project)
    mine.refresh_from_db()
    assert mine.role == "annotator"


@pytest.mark.django_db
def test_member_who_leaves_is_sent_to_the_project_list(client, project, admin_user, annotator):
    Membership.objects.filter(project=project, user=annotator).update(role="admin")
    mine = Membership.objects.get(project=project, user=admin_user)
    client.force_login(admin_user)
    response = client.post(url_member("projects:member_remove", project, mine))
    assert response["Location"] == reverse("projects:list")
    assert not Membership.objects.filter(pk=mine.pk).exists()
