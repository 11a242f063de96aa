"""Jobs API: list/retrieve for members, launch/cancel for project admins, 404 for outsiders."""

import pytest
from rest_framework.test import APIClient

from apps.jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def sent(monkeypatch):
    from workers.celery_app import app

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: messages.append((name, kw)))
    return messages


def _launch(api, project, payload, capture):
    with capture(execute=True):
        return api.post(f"/api/v1/projects/{project.pk}/jobs/", payload, format="json")


def test_anonymous_requests_are_rejected(api, make_job, project):
    job = make_job()
    for url in ["/api/v1/jobs/", f"/api/v1/jobs/{job.pk}/", f"/api/v1/projects/{project.pk}/jobs/"]:
        assert api.get(url).status_code in (401, 403), url
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code in (401, 403)
    assert api.post(f"/api/v1/projects/{project.pk}/jobs/", {"kind": "selftest"}).status_code in (
        401,
        403,
    )
    assert Job.objects.count() == 1


def test_outsiders_get_404_and_see_no_jobs(api, make_job, project, outsider):
    job = make_job()
    api.force_authenticate(outsider)
    assert api.get("/api/v1/jobs/").json()["results"] == []
    assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 404
    assert api.get(f"/api/v1/projects/{project.pk}/jobs/").status_code == 404
    response = api.post(f"/api/v1/projects/{project.pk}/jobs/", {"kind": "selftest"})
    assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_annotators_read_jobs_but_get_403_on_cancel_and_launch(
    api, make_job, project, annotator, sent
):
    job = make_job()
    api.force_authenticate(annotator)
    assert [j["id"] for j in api.get("/api/v1/jobs/").json()["results"]] == [job.pk]
    detail = api.get(f"/api/v1/jobs/{job.pk}/")
    assert detail.status_code == 200
    assert "log" in detail.json()
    assert api.get(f"/api/v1/projects/{project.pk}/jobs/").status_code == 200
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 403
    launch = api.post(f"/api/v1/projects/{project.pk}/jobs/", {"kind": "selftest"}, format="json")
    assert launch.status_code == 403
    assert Job.objects.count() == 1
    assert sent == []


def test_admin_launches_a_job_and_it_is_enqueued(
    api, project, admin_user, sent, django_capture_on_commit_callbacks
):
    api.force_authenticate(admin_user)
    response = _launch(
        api,
        project,
        {"kind": "selftest", "params": {"steps": 2, "step_seconds": 0.1}},
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["params"] == {"steps": 2, "step_seconds": 0.1}
    assert body["launched_by"] == admin_user.username
    assert [name for name, _ in sent] == ["frugal.selftest"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "train_everything"}, "kind"),
        ({}, "kind"),
        ({"kind": "selftest", "params": [1]}, "params"),
        ({"kind": "selftest", "params": {"steps": -1}}, "params"),
        ({"kind": "selftest", "params": {"bogus": 1}}, "params"),
    ],
)
def test_launch_with_bad_input_is_a_400_naming_the_field_and_creates_nothing(
    api, project, admin_user, sent, payload, field, django_capture_on_commit_callbacks
):
    api.force_authenticate(admin_user)
    response = _launch(api, project, payload, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert not Job.objects.exists()
    assert sent == []


def test_admin_cancels_a_queued_job(api, make_job, admin_user):
    job = make_job()
    api.force_authenticate(admin_user)
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_cancelling_a_finished_job_is_a_400(api, make_job, admin_user):
    job = make_job(status=JobStatus.SUCCEEDED)
    api.force_authenticate(admin_user)
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 400
    assert "already finished" in str(response.json())


def test_list_filters_by_project_status_and_kind(api, make_job, project, admin_user):
    a = make_job(kind="selftest", status=JobStatus.FAILED)
    b = make_job(kind="import_dataset")
    api.force_authenticate(admin_user)

    def ids(query):
        response = api.get("/api/v1/jobs/", query)
        assert response.status_code == 200, response.json()
        return {j["id"] for j in response.json()["results"]}

    assert ids({}) == {a.pk, b.pk}
    assert ids({"status": "failed"}) == {a.pk}
    assert ids({"kind": "import_dataset"}) == {b.pk}
    assert ids({"project": project.pk}) == {a.pk, b.pk}
    assert ids({"project": project.pk + 1000}) == set()
    assert api.get("/api/v1/jobs/", {"status": "exploded"}).status_code == 400


def test_list_is_cursor_paginated(api, make_job, admin_user):
    for _ in range(5):
        make_job()
    api.force_authenticate(admin_user)
    first = api.get("/api/v1/jobs/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    assert len(first["results"]) == 2
    assert len(second["results"]) == 2
    assert not {j["id"] for j in first["results"]} & {j["id"] for j in second["results"]}


def test_launchable_kinds_are_listed(api, outsider):
    api.force_authenticate(outsider)
    kinds = api.get("/api/v1/jobs/kinds/").json()
    assert "selftest" in [k["kind"] for k in kinds]


def test_token_authentication_works_for_jobs(api, make_job, admin_user):
    from apps.accounts.authentication import token_digest
    from apps.accounts.models import ApiToken

    job = make_job()
    ApiToken.objects.create(user=admin_user, name="ci", prefix="abc", digest=token_digest("s3cret"))
    api.credentials(HTTP_AUTHORIZATION="Bearer s3cret")
    assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200


def test_schema_documents_the_jobs_endpoints(api):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    assert "/api/v1/jobs/" in paths
    assert "/api/v1/jobs/{id}/cancel/" in paths
    launch = paths["/api/v1/projects/{project_id}/jobs/"]["post"]
    ref = launch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/JobLaunch")
    assert "201" in launch["responses"]
