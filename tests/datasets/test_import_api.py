"""Scripts launch imports of server-side files through the jobs API (admins only)."""

import pytest
from rest_framework.test import APIClient

from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    from workers.celery_app import app

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: messages.append((name, kw)))
    return messages


def _launch(project, user, params, capture):
    api = APIClient()
    api.force_authenticate(user)
    with capture(execute=True):
        return api.post(
            f"/api/v1/projects/{project.pk}/jobs/",
            {"kind": "import_dataset", "params": params},
            format="json",
        )


def test_admin_launches_an_import_of_a_server_folder(
    project, admin_user, data_dir, sent, django_capture_on_commit_callbacks
):
    path = str(data_dir / "wrench-youtube")
    response = _launch(project, admin_user, {"path": path}, django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.json()
    assert response.json()["params"]["format"] == "wrench"
    assert [name for name, _ in sent] == ["frugal.import_dataset"]


def test_import_of_a_path_outside_the_import_roots_is_refused(
    project, admin_user, sent, django_capture_on_commit_callbacks
):
    response = _launch(
        project, admin_user, {"path": "/etc/passwd"}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    assert "params" in response.json()["error"]["details"]
    assert not Job.objects.exists()
    assert sent == []


def test_annotators_cannot_launch_imports(
    project, annotator, sent, django_capture_on_commit_callbacks
):
    response = _launch(project, annotator, {"path": "/tmp"}, django_capture_on_commit_callbacks)
    assert response.status_code == 403
    assert sent == []
