"""Import (issue 14 item 7): the README's relative data path, WRENCH label case, the JSONL
column step, and the "clean HTML entities and byte order marks" option."""

import json
import shutil
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.datasets.import_services import resolve_server_path
from apps.datasets.models import Example
from apps.datasets.pipeline.parsers import clean_markup
from apps.jobs.models import Job
from workers.base import run_job
from workers.dataset_tasks import handle_import

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    """A project folder ``app`` beside a data folder ``shared/data`` (the README's layout)."""
    settings.FRUGAL_UPLOAD_DIR = tmp_path / "uploads"
    data = tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    app = tmp_path / "app"
    app.mkdir()
    settings.BASE_DIR = app
    settings.FRUGAL_IMPORT_ROOTS = [data.resolve()]
    return {"data": data, "app": app, "tmp": tmp_path}


def page(project) -> str:
    return f"/projects/{project.pk}/import/"


def run(job: Job) -> Job:
    run_job(job.pk, handle_import)
    job.refresh_from_db()
    return job


def test_the_readme_relative_path_resolves_against_the_project_folder(dirs):
    shutil.copytree(FIXTURES / "wrench-mini", dirs["data"] / "wrench-sms")
    assert resolve_server_path("../shared/data/wrench-sms") == (dirs["data"] / "wrench-sms")
    assert resolve_server_path("wrench-sms") == dirs["data"] / "wrench-sms"  # below a root
    # still checked against the roots: the project folder itself is not one
    (dirs["app"] / "secret.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValidationError, match="below the allowed import folders"):
        resolve_server_path("secret.jsonl")
    with pytest.raises(ValidationError, match="may only read below"):
        resolve_server_path("../app/secret.jsonl")


def test_wrench_labels_differing_only_in_case_map_to_the_projects(
    client, project, admin_user, dirs
):
    folder = dirs["data"] / "wrench-sms"
    shutil.copytree(FIXTURES / "wrench-mini", folder)
    (folder / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    client.force_login(admin_user)
    client.post(
        page(project),
        {"source": "path", "path": "../shared/data/wrench-sms", "default_split": "pool"},
    )
    job = run(Job.objects.get())
    assert job.status == "succeeded", job.error
    project.refresh_from_db()
    assert project.labels == ["HAM", "SPAM"]
    assert Example.objects.filter(project=project, gold_label=1).exists()
    # a real difference is still refused
    (folder / "label.json").write_text(json.dumps({"0": "spam", "1": "ham"}))
    client.post(page(project), {"source": "path", "path": "wrench-sms", "default_split": "pool"})
    job = run(Job.objects.latest("id"))
    assert job.status == "failed" and "differ from the project's labels" in job.error


def test_jsonl_upload_maps_its_keys_and_cleans_html_when_asked(client, project, admin_user):
    lines = [
        {"uid": "a", "body": "Tom &amp; Jerry<br />it&#39;s \ufefffun", "cls": "HAM"},
        {"uid": "b", "body": "WIN &pound;100 now", "cls": "spam", "extra": [1, 2]},
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    client.force_login(admin_user)
    step = client.post(
        page(project),
        {
            "source": "upload",
            "file": SimpleUploadedFile("msgs.jsonl", content),
            "default_split": "dev",
            "clean_text": "on",
        },
    )
    html = step.content.decode()
    for key in ("uid", "body", "cls", "extra"):
        assert f'<th scope="col">{key}</th>' in html
    assert "cleaned" in html and 'id="import-delimiter"' not in html
    token = html.split('name="token" value="')[1].split('"')[0]
    response = client.post(
        page(project) + "columns/",
        {"token": token, "column_text": "body", "column_label": "cls", "column_id": "uid"},
    )
    job = Job.objects.get()
    assert response.status_code == 302 and job.params["clean_text"] is True
    job = run(job)
    assert job.status == "succeeded", job.error
    a = Example.objects.get(project=project, external_id="a")
    assert (a.text, a.gold_label, a.split) == ("Tom & Jerry\nit's fun", 0, "dev")
    b = Example.objects.get(project=project, external_id="b")
    assert b.text == "WIN £100 now" and b.gold_label == 1


def test_text_is_kept_exact_without_the_option(client, project, admin_user):
    client.force_login(admin_user)
    step = client.post(
        page(project),
        {
            "source": "upload",
            "file": SimpleUploadedFile("m.jsonl", b'{"text": "a &amp; b<br />"}\n'),
            "default_split": "pool",
        },
    )
    token = step.content.decode().split('name="token" value="')[1].split('"')[0]
    client.post(page(project) + "columns/", {"token": token, "column_text": "text"})
    assert run(Job.objects.get()).status == "succeeded"
    assert Example.objects.get(project=project).text == "a &amp; b<br />"


def test_bad_jsonl_is_refused_at_the_column_step(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(
        page(project),
        {
            "source": "upload",
            "file": SimpleUploadedFile("m.jsonl", b'{"text": "ok"}\n[1, 2]\n'),
            "default_split": "pool",
        },
    )
    assert response.status_code == 400 and b"line 2: expected a JSON object" in response.content
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a &amp; b", "a & b"),
        ("x<br>y<BR/>z<br />", "x\ny\nz\n"),
        ("\ufeffhello\ufeff", "hello"),
        ("it&#39;s &lt;br /&gt; ok", "it's \n ok"),
        ("plain", "plain"),
    ],
)
def test_clean_markup(raw, clean):
    assert clean_markup(raw) == clean
