"""The distillation page, the examples browser's student column and filter, and the export's
fill=student option."""

import json

import pytest

from apps.distill import services
from apps.distill.models import Prediction
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def served(spam_project, fast_params):
    services.run_distillation(
        project=spam_project, params={**fast_params, "losses": ["kd", "ptloss"]}
    )
    return spam_project


def test_members_see_the_comparison_table_and_plot(client, served, annotator):
    client.force_login(annotator)
    html = client.get(f"/projects/{served.pk}/distill/").content.decode()
    assert "Comparison" in html and "PTLoss" in html and "KD" in html
    assert 'class="barchart"' in html and "<rect" in html
    assert "serving" in html and "download" in html
    assert 'name="teacher"' not in html  # the launch form is for admins


def test_outsiders_get_404_and_annotators_cannot_launch(client, served, annotator, outsider):
    client.force_login(outsider)
    assert client.get(f"/projects/{served.pk}/distill/").status_code == 404
    client.force_login(annotator)
    response = client.post(f"/projects/{served.pk}/distill/launch/", {"teacher": "encoder"})
    assert response.status_code in (403, 404)
    assert not Job.objects.exists()


def test_admins_launch_from_the_page_and_bad_settings_change_nothing(
    client, spam_project, admin_user, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    client.force_login(admin_user)
    bad = client.post(
        f"/projects/{spam_project.pk}/distill/launch/",
        {"teacher": "encoder", "layers": "0", "losses": ["kd"]},
        HTTP_HX_REQUEST="true",
    )
    assert "layers" in bad.content.decode() and not Job.objects.exists()


def test_a_member_downloads_a_student_folder(client, served, annotator):
    client.force_login(annotator)
    student = services.serving_student(project=served)
    response = client.get(f"/projects/{served.pk}/distill/students/{student.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-tar"


def test_the_examples_browser_shows_and_filters_by_the_students_prediction(
    client, served, annotator
):
    client.force_login(annotator)
    url = f"/projects/{served.pk}/data/examples/"
    html = client.get(url).content.decode()
    assert "<th>Student</th>" in html
    pred = Prediction.objects.filter(project=served).first()
    name = served.labels[pred.label]
    assert f"{name} (" in html
    spam = client.get(url, {"student_label": "1"}).content.decode()
    n_spam = Prediction.objects.filter(project=served, label=1).count()
    assert spam.count('class="student"') == min(n_spam, 50)
    low = client.get(url, {"max_student_confidence": "0.0"}).content.decode()
    assert low.count('class="student"') == 0


def test_export_fills_unlabeled_pool_rows_with_the_student(client, served, admin_user):
    client.force_login(admin_user)
    plain = client.get(f"/api/v1/projects/{served.pk}/export/", {"format": "jsonl"})
    filled = client.get(
        f"/api/v1/projects/{served.pk}/export/", {"format": "jsonl", "fill": "student"}
    )
    rows = [json.loads(x) for x in b"".join(plain.streaming_content).decode().splitlines()]
    rows2 = [json.loads(x) for x in b"".join(filled.streaming_content).decode().splitlines()]
    unlabeled = [r["id"] for r in rows if r["split"] == "pool" and r["label"] is None]
    assert len(unlabeled) == 8
    by_id = {r["id"]: r for r in rows2}
    for key in unlabeled:
        assert by_id[key]["label"] in (0, 1)
        assert by_id[key]["version"] == "distilled student"
        assert by_id[key]["source"] == "model"
    labeled = next(r for r in rows if r["split"] == "pool" and r["label"] is not None)
    assert by_id[labeled["id"]]["label"] == labeled["label"]  # existing labels stay
    bad = client.get(f"/api/v1/projects/{served.pk}/export/", {"fill": "teacher"})
    assert bad.status_code == 400
