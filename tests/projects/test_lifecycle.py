"""Archive (hidden, read-only, reversible) and delete (typed name; data, jobs, artifact files)."""

from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.accounts.services import create_api_token
from apps.datasets.models import Example
from apps.jobs.artifacts import save_artifact
from apps.jobs.models import Artifact, Job, JobStatus
from apps.projects import lifecycle
from apps.projects.models import Project


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "artifacts")},
        },
    }
    return tmp_path / "artifacts"


@pytest.fixture
def filled(project, admin_user):
    for i in range(7):
        Example.objects.create(project=project, external_id=f"e{i}", text="t", split="pool")
    job = Job.objects.create(
        project=project, kind="selftest", launched_by=admin_user, status=JobStatus.SUCCEEDED
    )
    artifact = save_artifact(
        project=project, job=job, kind="model", name="m.bin", fileobj_or_bytes=b"x"
    )
    return artifact


def test_archive_hides_and_makes_read_only(client, project, admin_user, annotator):
    client.force_login(admin_user)
    client.post(reverse("projects:archive", args=[project.pk]))
    project.refresh_from_db()
    assert project.archived_at is not None
    listing = client.get(reverse("projects:list"))
    assert b"Archived (1)" in listing.content
    assert reverse("projects:dashboard", args=[project.pk]).encode() not in listing.content
    archived = client.get(reverse("projects:list") + "?archived=1")
    assert reverse("projects:dashboard", args=[project.pk]).encode() in archived.content
    dashboard = client.get(reverse("projects:dashboard", args=[project.pk]))
    assert dashboard.status_code == 200 and b"read-only" in dashboard.content
    refused = client.post(
        reverse("projects:settings", args=[project.pk]), {"name": "Renamed", "labels": "A\nB"}
    )
    assert refused.status_code == 403
    project.refresh_from_db()
    assert project.name == "Spam"
    # the API refuses writes too, also with a token
    _, token = create_api_token(user=annotator, name="t")
    example = Example.objects.create(project=project, external_id="x", text="t", split="dev")
    api = client.__class__()
    response = api.patch(
        f"/api/v1/projects/{project.pk}/examples/{example.pk}/",
        {"gold_label": 1},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 403
    example.refresh_from_db()
    assert example.gold_label is None
    client.post(reverse("projects:unarchive", args=[project.pk]))
    project.refresh_from_db()
    assert project.archived_at is None
    allowed = api.patch(
        f"/api/v1/projects/{project.pk}/examples/{example.pk}/",
        {"gold_label": 1},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert allowed.status_code == 200


def test_outsiders_still_get_404_on_an_archived_project(client, project, admin_user, outsider):
    lifecycle.archive_project(project=project, user=admin_user)
    client.force_login(outsider)
    assert client.post(reverse("projects:settings", args=[project.pk])).status_code == 404
    assert client.post(reverse("projects:unarchive", args=[project.pk])).status_code == 404


def test_delete_needs_the_typed_name_and_removes_everything(
    client, project, admin_user, filled, artifact_dir
):
    stored = Path(artifact_dir) / filled.path
    assert stored.exists()
    client.force_login(admin_user)
    url = reverse("projects:delete", args=[project.pk])
    page = client.get(url)
    assert b"<strong>7</strong> examples" in page.content
    wrong = client.post(url, {"name": "spam"})
    assert wrong.status_code == 400 and b"exactly" in wrong.content
    assert Project.objects.filter(pk=project.pk).exists()
    done = client.post(url, {"name": "Spam"}, follow=True)
    assert b"7 examples, 1 jobs and 1 stored artifacts" in done.content
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Example.objects.exists() and not Job.objects.exists()
    assert not Artifact.objects.exists() and not stored.exists()


def test_delete_waits_for_running_jobs_and_is_for_admins(project, admin_user, annotator):
    Job.objects.create(project=project, kind="selftest", status=JobStatus.RUNNING)
    with pytest.raises(ValidationError, match="queued or running"):
        lifecycle.delete_project(project=project, user=admin_user, confirm_name="Spam")
    with pytest.raises(PermissionDenied):
        lifecycle.delete_project(project=project, user=annotator, confirm_name="Spam")
    with pytest.raises(PermissionDenied):
        lifecycle.archive_project(project=project, user=annotator)
    assert Project.objects.filter(pk=project.pk).exists()


def test_staff_who_are_not_members_may_delete(client, project, make_user):
    staff = make_user("stella", is_staff=True)
    client.force_login(staff)
    client.post(reverse("projects:delete", args=[project.pk]), {"name": "Spam"})
    assert not Project.objects.filter(pk=project.pk).exists()


# Markers of the actions each page offers while the project is active.
ACTION_MARKERS = {
    "projects:dashboard": [">Label gold examples</a>", ">Import data</a>"],
    "training:dashboard": ['action="/projects/{pk}/training/launch/"'],
    "rules:review": ['id="review-form"'],
    "datasets:label": ['name="example_id"'],
    "imports:new": ['enctype="multipart/form-data"'],
}
READ_ONLY_MARKERS = {
    "projects:dashboard": 'id="archived-notice"',
    "training:dashboard": 'id="training-read-only"',
    "rules:review": 'id="review-read-only"',
    "datasets:label": 'id="label-read-only"',
    "imports:new": 'id="import-read-only"',
}


def test_archived_pages_show_no_action_buttons(client, project, admin_user):
    Example.objects.create(project=project, external_id="d", text="t", split="dev")
    client.force_login(admin_user)
    for archived in (False, True):
        if archived:
            lifecycle.archive_project(project=project, user=admin_user)
        for view, markers in ACTION_MARKERS.items():
            response = client.get(reverse(view, args=[project.pk]))
            assert response.status_code == 200, view
            body = response.content.decode()
            for marker in markers:
                marker = marker.format(pk=project.pk)
                assert (marker in body) is not archived, (view, marker, archived)
            assert (READ_ONLY_MARKERS[view] in body) is archived, view
            if archived and view != "projects:dashboard":
                assert 'id="archived-banner"' in body
    example = Example.objects.get(project=project)
    detail = client.get(reverse("datasets:example_detail", args=[project.pk, example.pk]))
    assert b"detail-label-form" not in detail.content


@pytest.mark.parametrize(
    "view, data",
    [
        ("training:launch", {"action": "warm"}),
        ("rules:review", {"action": "accept", "rule_id": "1"}),
        ("datasets:label", {"label": "0", "example_id": "1"}),
        ("imports:new", {"source": "path", "path": "x.csv"}),
        ("bulk:bulk", {"action": "label", "label": "0"}),
    ],
)
def test_archived_post_endpoints_refuse_with_a_clear_message(
    client, project, admin_user, view, data
):
    from apps.projects.middleware import MESSAGE, NOTICE_HEADER

    lifecycle.archive_project(project=project, user=admin_user)
    client.force_login(admin_user)
    url = reverse(view, args=[project.pk])
    jobs_before = Job.objects.count()
    response = client.post(url, data)
    assert response.status_code == 403 and MESSAGE in response.content.decode()
    htmx = client.post(url, data, headers={"HX-Request": "true"})
    assert htmx.status_code == 403 and htmx[NOTICE_HEADER] == MESSAGE
    assert Job.objects.count() == jobs_before


def test_api_project_list_leaves_archived_projects_out_unless_asked(client, project, admin_user):
    other = Project.objects.create(name="Other", labels=["A", "B"], created_by=admin_user)
    other.memberships.create(user=admin_user, role="admin")
    lifecycle.archive_project(project=project, user=admin_user)
    client.force_login(admin_user)

    def names(query=""):
        response = client.get("/api/v1/projects/" + query)
        assert response.status_code == 200
        return {p["name"]: p["archived_at"] for p in response.json()["results"]}

    assert names() == {"Other": None}
    assert names("?archived=false") == {"Other": None}
    archived = names("?archived=true")
    assert list(archived) == ["Spam"] and archived["Spam"] is not None
    assert client.get("/api/v1/projects/?archived=maybe").status_code == 400
    # one archived project is still readable by id
    assert client.get(f"/api/v1/projects/{project.pk}/").status_code == 200
