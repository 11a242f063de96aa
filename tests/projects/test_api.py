"""Projects API: /api/v1/projects/, /api/v1/projects/<id>/, /api/v1/projects/<id>/members/."""

import pytest

from apps.accounts.services import create_api_token
from apps.datasets.models import Example
from apps.projects.models import Membership, Project


@pytest.fixture
def as_user():
    def headers(user) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {create_api_token(user=user, name='t')[1]}"}

    return headers


def detail(project):
    return f"/api/v1/projects/{project.pk}/"


@pytest.mark.django_db
def test_list_returns_only_callers_projects_with_role(client, project, annotator, as_user):
    Project.objects.create(name="Not mine", labels=["a", "b"])
    response = client.get("/api/v1/projects/", **as_user(annotator))
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row == {
        "id": project.pk,
        "name": "Spam",
        "description": "",
        "task_type": "text_classification",
        "labels": ["HAM", "SPAM"],
        "created_at": row["created_at"],
        "archived_at": None,
        "role": "annotator",
    }


@pytest.mark.django_db
def test_list_is_cursor_paginated(client, make_user, as_user):
    staff = make_user("root", is_superuser=True, is_staff=True)
    for i in range(5):
        Project.objects.create(name=f"P{i}", labels=["a", "b"])
    headers = as_user(staff)
    url, seen = "/api/v1/projects/?page_size=2", []
    while url:
        page = client.get(url, **headers).json()
        assert len(page["results"]) <= 2
        seen += [p["name"] for p in page["results"]]
        url = page["next"]
    assert seen == ["P0", "P1", "P2", "P3", "P4"]


@pytest.mark.django_db
def test_post_creates_project_for_staff(client, make_user, as_user):
    staff = make_user("stafford", is_staff=True)
    response = client.post(
        "/api/v1/projects/",
        {"name": "Reviews", "labels": ["NEG", "POS"], "task_type": "text_classification"},
        content_type="application/json",
        **as_user(staff),
    )
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "admin"
    project = Project.objects.get(pk=response.json()["id"])
    assert Membership.objects.get(project=project, user=staff).role == "admin"


@pytest.mark.django_db
def test_post_by_non_staff_is_403(client, annotator, as_user):
    response = client.post(
        "/api/v1/projects/",
        {"name": "Reviews", "labels": ["NEG", "POS"]},
        content_type="application/json",
        **as_user(annotator),
    )
    assert response.status_code == 403
    assert not Project.objects.filter(name="Reviews").exists()


@pytest.mark.django_db
def test_post_with_duplicate_labels_is_400_with_details(client, make_user, as_user):
    staff = make_user("stafford", is_staff=True)
    response = client.post(
        "/api/v1/projects/",
        {"name": "Reviews", "labels": ["POS", "pos"]},
        content_type="application/json",
        **as_user(staff),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "appears twice" in error["details"]["labels"][0]
    assert not Project.objects.filter(name="Reviews").exists()


@pytest.mark.django_db
def test_get_project_for_members_404_for_outsiders(client, project, annotator, outsider, as_user):
    assert client.get(detail(project), **as_user(annotator)).json()["name"] == "Spam"
    response = client.get(detail(project), **as_user(outsider))
    assert response.status_code == 404
    missing = client.get("/api/v1/projects/999999/", **as_user(outsider))
    assert missing.json() == response.json()


@pytest.mark.django_db
def test_patch_by_admin_changes_project(client, project, admin_user, as_user):
    response = client.patch(
        detail(project),
        {"name": "Spam filter", "labels": ["HAM", "SPAM", "PROMO"]},
        content_type="application/json",
        **as_user(admin_user),
    )
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert (project.name, project.labels) == ("Spam filter", ["HAM", "SPAM", "PROMO"])


@pytest.mark.django_db
def test_patch_by_annotator_is_403(client, project, annotator, as_user):
    response = client.patch(
        detail(project), {"name": "Hacked"}, content_type="application/json", **as_user(annotator)
    )
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.name == "Spam"


@pytest.mark.django_db
def test_patch_removing_label_in_use_is_400(client, project, admin_user, as_user):
    Example.objects.create(project=project, external_id="1", text="x", label=1)
    response = client.patch(
        detail(project),
        {"labels": ["HAM", "EGGS"]},
        content_type="application/json",
        **as_user(admin_user),
    )
    assert response.status_code == 400
    assert "cannot be removed" in response.json()["error"]["details"]["labels"][0]
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM"]


@pytest.mark.django_db
def test_members_endpoint_lists_members_for_members_only(
    client, project, annotator, outsider, as_user
):
    response = client.get(f"{detail(project)}members/", **as_user(annotator))
    assert response.status_code == 200
    assert sorted((m["username"], m["role"]) for m in response.json()["results"]) == [
        ("annie", "annotator"),
        ("owner", "admin"),
    ]
    assert client.get(f"{detail(project)}members/", **as_user(outsider)).status_code == 404
