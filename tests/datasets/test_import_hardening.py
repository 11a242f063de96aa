"""Import hardening through the pages: upload-step cases of the bad-input corpus, the user's
file name in messages, ``.json`` uploads, and no server path in what members see."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.datasets.models import Example
from apps.jobs.models import Job
from workers.base import run_job
from workers.dataset_tasks import handle_import

CORPUS = Path(__file__).parent / "bad_inputs"


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    settings.FRUGAL_UPLOAD_DIR = tmp_path / "uploads"
    root = tmp_path / "imports"
    root.mkdir()
    settings.FRUGAL_IMPORT_ROOTS = [root.resolve()]
    return {"uploads": tmp_path / "uploads", "root": root, "tmp": tmp_path}


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def post_upload(client, project, name: str, data: bytes, fmt: str = ""):
    return client.post(
        f"/projects/{project.pk}/import/",
        {
            "source": "upload",
            "file": SimpleUploadedFile(name, data),
            "format": fmt,
            "default_split": "pool",
        },
    )


def test_a_text_file_renamed_to_zip_is_refused_by_name(admin_client, project, dirs):
    response = post_upload(
        admin_client, project, "data.zip", (CORPUS / "not_a_zip.zip").read_bytes()
    )
    assert response.status_code == 400
    assert "data.zip: not a valid zip file" in response.content.decode()
    assert not Job.objects.exists() and not list(dirs["uploads"].iterdir())


def test_zip_slip_members_never_leave_the_upload_folder(admin_client, project, dirs):
    escaped = Path("/tmp/frugal-zip-slip.txt")
    escaped.unlink(missing_ok=True)
    response = post_upload(
        admin_client, project, "evil.zip", (CORPUS / "zip_slip.zip").read_bytes()
    )
    assert response.status_code == 400
    assert "evil.zip: the zip holds none of train.json" in response.content.decode()
    assert not escaped.exists()
    assert not any(p.is_file() for p in dirs["tmp"].rglob("*") if p.name.endswith("slip.txt"))
    assert not Job.objects.exists() and not list(dirs["uploads"].iterdir())


def test_csv_column_step_errors_name_the_users_file(admin_client, project):
    data = b'id,text\r\na,first\rb,"unclosed\n'
    response = post_upload(admin_client, project, "my comments.csv", data)
    body = response.content.decode()
    assert response.status_code == 400, body
    assert "my comments.csv, line 2: a carriage return (CR) inside an unquoted field" in body


def test_mixed_line_endings_are_named_with_file_and_line_at_the_column_step(
    admin_client, project, dirs
):
    response = post_upload(
        admin_client, project, "mixed.csv", (CORPUS / "mixed_endings.csv").read_bytes(), "csv"
    )
    assert response.status_code == 400
    assert "mixed.csv, line 3: a carriage return (CR)" in response.content.decode()
    assert not Job.objects.exists() and not list(dirs["uploads"].iterdir())


def test_json_array_uploads_are_accepted(admin_client, project):
    data = b'[{"id": "a", "text": "first", "label": "SPAM"}, {"id": "b", "text": "second"}]'
    response = post_upload(admin_client, project, "records.json", data)
    assert response.status_code == 302, response.content.decode()[:500]
    job = Job.objects.get()
    assert job.params["format"] == "json"
    run_job(job.pk, handle_import)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert Example.objects.filter(project=project).count() == 2


def _through_columns(client, project, response):
    """JSONL imports have a column step: take ``text`` as the text."""
    token = response.content.decode().split('name="token" value="')[1].split('"')[0]
    client.post(f"/projects/{project.pk}/import/columns/", {"token": token, "column_text": "text"})


def test_server_path_errors_and_parameters_never_show_server_folders(
    client, admin_client, project, annotator, dirs
):
    (dirs["root"] / "sub").mkdir()
    (dirs["root"] / "sub" / "bad.jsonl").write_text('{"id": "a", "text": ""}\n')
    refused = admin_client.post(
        f"/projects/{project.pk}/import/",
        {"source": "path", "path": "/etc/passwd", "default_split": "pool"},
    )
    assert refused.status_code == 400
    assert "passwd: imports may only read below the allowed import folders" in (
        refused.content.decode()
    )
    step = admin_client.post(
        f"/projects/{project.pk}/import/",
        {"source": "path", "path": "sub/bad.jsonl", "default_split": "pool"},
    )
    _through_columns(admin_client, project, step)
    job = Job.objects.get()
    assert job.params["path"] == "sub/bad.jsonl"
    run_job(job.pk, handle_import)
    client.force_login(annotator)
    for url in (f"/jobs/{job.pk}/", f"/api/v1/jobs/{job.pk}/"):
        body = client.get(url).content.decode()
        assert str(dirs["tmp"]) not in body, url
        assert "bad.jsonl" in body


def test_a_job_whose_path_left_the_roots_fails_clearly(admin_client, project, dirs, settings):
    (dirs["root"] / "ok.jsonl").write_text('{"id": "a", "text": "x"}\n')
    step = admin_client.post(
        f"/projects/{project.pk}/import/",
        {"source": "path", "path": "ok.jsonl", "default_split": "pool"},
    )
    _through_columns(admin_client, project, step)
    job = Job.objects.get()
    other = dirs["tmp"] / "elsewhere"
    other.mkdir()
    settings.FRUGAL_IMPORT_ROOTS = [other.resolve()]
    run_job(job.pk, handle_import)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "ok.jsonl: no such file or folder below the allowed import folders" in job.error
    assert str(dirs["tmp"]) not in job.error
