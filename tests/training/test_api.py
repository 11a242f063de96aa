"""Training API: rounds with metrics for members, launching for admins."""

import pytest

from apps.jobs.models import Job
from apps.training import kinds
from apps.training.models import Round, RoundStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def rounds(project):
    Round.objects.create(
        project=project,
        number=1,
        status=RoundStatus.COMPLETE,
        alpha=2.0,
        metrics={"coverage": 0.3},
        state_path="projects/1/prboost_state/x.tar",
    )
    Round.objects.create(project=project, number=2, status=RoundStatus.FAILED, error="boom")


def test_members_list_rounds_with_metrics(client, project, annotator, rounds):
    client.force_login(annotator)
    data = client.get(f"/api/v1/projects/{project.pk}/training/rounds/").json()
    assert [(r["number"], r["status"]) for r in data] == [(1, "complete"), (2, "failed")]
    assert data[0]["metrics"] == {"coverage": 0.3} and data[0]["alpha"] == 2.0
    summary = client.get(f"/api/v1/projects/{project.pk}/training/").json()
    assert summary["current_round"]["number"] == 1
    assert summary["settings"]["proposer"] == "ngram"


def test_annotators_cannot_launch_or_change_settings(client, project, annotator):
    client.force_login(annotator)
    base = f"/api/v1/projects/{project.pk}/training"
    launch = client.post(f"{base}/jobs/", {"action": "warm"}, content_type="application/json")
    assert launch.status_code == 403
    patch = client.patch(f"{base}/settings/", {"top_k": 3}, content_type="application/json")
    assert patch.status_code == 403
    assert not Job.objects.exists()


def test_admins_launch_a_training_job_once_at_a_time(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/api/v1/projects/{project.pk}/training/jobs/"
    created = client.post(url, {"action": "warm"}, content_type="application/json")
    assert created.status_code == 201
    assert created.json()["kind"] == kinds.WARM_CACHE
    busy = client.post(url, {"action": "refresh"}, content_type="application/json")
    assert busy.status_code == 400
    assert "still queued" in str(busy.json())
    bad = client.post(url, {"action": "explode"}, content_type="application/json")
    assert bad.status_code == 400
    assert [j["kind"] for j in client.get(url).json()] == [kinds.WARM_CACHE]


def test_admins_change_settings_and_bad_values_change_nothing(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/api/v1/projects/{project.pk}/training/settings/"
    ok = client.patch(url, {"proposer": "ngram"}, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["proposer"] == "ngram"
    bad = client.patch(url, {"top_k": 0, "proposer": "causal"}, content_type="application/json")
    assert bad.status_code == 400 and "top_k" in str(bad.json())
    project.refresh_from_db()
    assert project.settings["prboost"]["proposer"] == "ngram"
