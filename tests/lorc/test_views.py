"""The LoRC page: members see it, admins launch and switch, outsiders get 404."""

import pytest

from apps.jobs.models import Job, JobStatus
from apps.lorc import kinds
from apps.training.prboost_settings import prboost_settings

pytestmark = pytest.mark.django_db


def test_members_see_the_page_read_only(client, project, annotator):
    client.force_login(annotator)
    response = client.get(f"/projects/{project.pk}/lorc/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "KV memory saved" in html and "Calibrate LoRC" not in html
    assert client.post(f"/projects/{project.pk}/lorc/launch/").status_code == 403
    assert client.post(f"/projects/{project.pk}/lorc/proposer/", {"use": "off"}).status_code == 403
    assert not Job.objects.exists()


def test_outsiders_get_404(client, project, outsider):
    client.force_login(outsider)
    assert client.get(f"/projects/{project.pk}/lorc/").status_code == 404
    assert client.post(f"/projects/{project.pk}/lorc/launch/").status_code == 404


def test_anonymous_users_are_sent_to_login(client, project):
    response = client.get(f"/projects/{project.pk}/lorc/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_admin_launches_a_calibration_job_once(client, project, admin_user):
    client.force_login(admin_user)
    assert "Calibrate LoRC" in client.get(f"/projects/{project.pk}/lorc/").content.decode()
    response = client.post(
        f"/projects/{project.pk}/lorc/launch/", {"bits": "4"}, HTTP_HX_REQUEST="true"
    )
    job = Job.objects.get(project=project)
    assert job.kind == kinds.CALIBRATE and job.status == JobStatus.QUEUED
    assert job.params == {"bits": 4, "ceiling": 1.04}
    assert 'hx-trigger="every 2s"' in response.content.decode()
    again = client.post(f"/projects/{project.pk}/lorc/launch/", HTTP_HX_REQUEST="true")
    assert "still queued" in again.content.decode()
    bad = client.post(
        f"/projects/{project.pk}/lorc/launch/", {"ceiling": "7"}, HTTP_HX_REQUEST="true"
    )
    assert "at most 2" in bad.content.decode()
    assert Job.objects.filter(project=project).count() == 1


def test_switching_to_a_model_of_another_project_is_refused(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(
        f"/projects/{project.pk}/lorc/proposer/", {"model": "999"}, HTTP_HX_REQUEST="true"
    )
    assert "compressed models" in response.content.decode()
    off = client.post(
        f"/projects/{project.pk}/lorc/proposer/", {"use": "off"}, HTTP_HX_REQUEST="true"
    )
    assert "not using a LoRC model" in off.content.decode()
    assert prboost_settings(project)["language_model"] == ""


def test_the_project_dashboard_links_to_the_page(client, project, annotator):
    client.force_login(annotator)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert f"/projects/{project.pk}/lorc/" in html


def test_admin_switches_the_proposer_to_a_listed_model_and_back(client, project, admin_user):
    from apps.jobs.artifacts import save_artifact
    from apps.lorc.models import CompressedLM

    artifact = save_artifact(project=project, kind="lorc", name="lorc-int8.pt",
                             fileobj_or_bytes=b"factors")  # fmt: skip
    metrics = {"saved": 0.6, "bytes_full": 23040, "bytes_lorc": 9216, "ppl_full": 15.4,
               "ppl_lorc": 16.1, "top1": 0.9, "overlap": 0.95, "agreement_texts": 48,
               "eval_tokens": 2048}  # fmt: skip
    m = CompressedLM.objects.create(project=project, artifact=artifact, metrics=metrics)
    client.force_login(admin_user)
    # With the default n-gram proposer there is no LM to compress: a clear refusal.
    refused = client.post(
        f"/projects/{project.pk}/lorc/proposer/", {"model": str(m.pk)}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "The proposer is not a causal LM" in refused
    project.settings = {**(project.settings or {}), "prboost": {"proposer": "causal"}}
    project.save(update_fields=["settings"])
    html = client.get(f"/projects/{project.pk}/lorc/").content.decode()
    assert "60%" in html and "15.40 → 16.10" in html and "Use for proposer" in html
    response = client.post(
        f"/projects/{project.pk}/lorc/proposer/", {"model": str(m.pk)}, HTTP_HX_REQUEST="true"
    )
    assert "Stop using for proposer" in response.content.decode()
    project.refresh_from_db()
    name = prboost_settings(project)["language_model"]
    assert name.startswith("lorc:") and name.endswith(artifact.path)
    client.post(f"/projects/{project.pk}/lorc/proposer/", {"use": "off"}, HTTP_HX_REQUEST="true")
    project.refresh_from_db()
    assert prboost_settings(project)["language_model"] == ""
