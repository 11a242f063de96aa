"""Import pages: permissions, upload and server-path sources, CSV column picking, job results."""

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import RequestFactory

from apps.datasets import import_services as services
from apps.datasets.import_services import resolve_server_path
from apps.datasets.models import Example
from apps.jobs.models import Job
from workers.base import run_job
from workers.dataset_tasks import handle_import

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    """Uploads and the allowed server folder live in the test's own temporary folder."""
    settings.FRUGAL_UPLOAD_DIR = tmp_path / "uploads"
    root = tmp_path / "imports"
    root.mkdir()
    settings.FRUGAL_IMPORT_ROOTS = [root.resolve()]
    return {"uploads": tmp_path / "uploads", "root": root}


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def page(project) -> str:
    return f"/projects/{project.pk}/import/"


def upload(name: str, content: bytes | str, **fields) -> dict:
    data = content.encode() if isinstance(content, str) else content
    return {
        "source": "upload",
        "file": SimpleUploadedFile(name, data),
        "format": "",
        "default_split": "pool",
        **fields,
    }


def through_columns(client, project, response, **columns):
    """Pass the column step (JSONL and CSV have one): the text column is ``text`` unless given."""
    html = response.content.decode()
    token = html.split('name="token" value="')[1].split('"')[0]
    data = {"token": token, "column_text": "text"}
    data.update({f"column_{key}": value for key, value in columns.items()})
    return client.post(page(project) + "columns/", data)


def run_the_job(job: Job) -> Job:
    run_job(job.pk, handle_import)
    job.refresh_from_db()
    return job


# --- permissions -----------------------------------------------------------------------------


def test_import_page_is_for_project_admins(admin_client, project):
    response = admin_client.get(page(project))
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert b'enctype="multipart/form-data"' in response.content


@pytest.mark.parametrize("url", ["", "columns/", "preview/?token=x", "cancel/"])
def test_annotators_get_403_on_every_import_page(client, project, annotator, url):
    client.force_login(annotator)
    method = client.get if url.startswith(("", "preview")) and url != "columns/" else client.post
    if url in ("columns/", "cancel/"):
        method = client.post
    assert method(page(project) + url).status_code == 403


def test_annotators_cannot_post_an_import(client, project, annotator):
    client.force_login(annotator)
    response = client.post(page(project), upload("a.jsonl", '{"text": "x"}\n'))
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_non_members_get_404(client, project, outsider):
    client.force_login(outsider)
    assert client.get(page(project)).status_code == 404
    assert client.post(page(project) + "columns/").status_code == 404


def test_anonymous_users_are_sent_to_log_in(client, project):
    response = client.get(page(project))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_forms_are_csrf_protected(project, admin_user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(page(project), upload("a.jsonl", '{"text": "x"}\n')).status_code == 403


# --- upload --------------------------------------------------------------------------------------


def test_jsonl_upload_starts_a_job_and_redirects_to_its_page(admin_client, project, dirs):
    response = admin_client.post(
        page(project), upload("data.jsonl", (FIXTURES / "examples.jsonl").read_bytes())
    )
    assert response.status_code == 200 and not Job.objects.exists()  # the column step first
    assert '<th scope="col">text</th>' in response.content.decode()
    response = through_columns(admin_client, project, response)
    job = Job.objects.get(kind="import_dataset")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    # The parameters name the staged file only, never a server path; the worker resolves it.
    assert "/" not in job.params["path"] and job.params["path"] != "data.jsonl"  # a random name
    staged = services.staged_path(job.params["path"])
    assert staged.parent == dirs["uploads"]
    assert staged.exists()
    job = run_the_job(job)
    assert job.status == "succeeded", job.error
    assert job.result["rows"] == 3 and job.result["splits"]["dev"] == 1
    assert not staged.exists(), "the upload is deleted after the job"
    assert Example.objects.filter(project=project).count() == 3


def test_failed_import_job_names_the_problems_and_writes_nothing(admin_client, project):
    bad = '{"id": "a", "text": "fine", "label": "HAM"}\n{"id": "b", "text": "", "label": "EGGS"}\n'
    through_columns(
        admin_client, project, admin_client.post(page(project), upload("bad.jsonl", bad))
    )
    job = run_the_job(Job.objects.get())
    assert job.status == "failed"
    assert "bad.jsonl, line 2, column 'text': the text is empty" in job.error
    assert job.result["problems"][0] == {
        "file": "bad.jsonl",
        "line": 2,
        "column": "text",
        "reason": "the text is empty",
    }
    assert not Example.objects.filter(project=project).exists()
    listing = admin_client.get(page(project)).content.decode()
    assert "<li>bad.jsonl, line 2, column text: the text is empty</li>" in listing
    assert not services.staged_path(job.params["path"]).exists()


def test_upload_over_the_size_limit_is_refused(admin_client, project, settings, dirs):
    settings.FRUGAL_IMPORT_MAX_BYTES = 10
    response = admin_client.post(page(project), upload("big.jsonl", '{"text": "0123456789"}\n'))
    assert response.status_code == 400
    assert "over the import limit of 10 bytes" in response.content.decode()
    assert not Job.objects.exists()
    assert not dirs["uploads"].exists() or not any(dirs["uploads"].iterdir())


def test_upload_of_an_unknown_file_type_is_refused(admin_client, project):
    response = admin_client.post(page(project), upload("notes.docx", "hello"))
    assert response.status_code == 400 and "unsupported file type" in response.content.decode()


def test_wrench_zip_upload_imports_all_splits(admin_client, project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("train.json", "valid.json", "test.json", "label.json"):
            archive.write(FIXTURES / "wrench-mini" / name, f"youtube/{name}")
        archive.writestr("../../evil.json", "{}")  # ignored: only the WRENCH names are read
    admin_client.post(page(project), upload("youtube.zip", buffer.getvalue()))
    job = run_the_job(Job.objects.get())
    assert job.status == "succeeded", job.error
    assert job.result["splits"] == {"pool": 4, "dev": 2, "test": 2}
    assert not services.staged_path(job.params["path"]).exists()


# --- CSV columns ---------------------------------------------------------------------------------


def test_csv_upload_shows_header_and_preview_then_imports_the_picked_columns(admin_client, project):
    response = admin_client.post(
        page(project), upload("comments.csv", (FIXTURES / "comments.csv").read_bytes())
    )
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("comment_id", "author", "content", "class", "where"):
        assert f'<th scope="col">{name}</th>' in html
    assert "Huh, anyway check out this channel" in html  # a preview row
    assert '<option value="content" selected>' in html  # text column guessed
    token = html.split('name="token" value="')[1].split('"')[0]
    assert not Job.objects.exists(), "no job before the columns are chosen"

    response = admin_client.post(
        page(project) + "columns/",
        {
            "token": token,
            "column_text": "content",
            "column_label": "class",
            "column_id": "comment_id",
            "column_split": "where",
            "delimiter": ",",
        },
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["columns"] == {
        "text": "content",
        "label": "class",
        "id": "comment_id",
        "split": "where",
    }
    job = run_the_job(job)
    assert job.status == "succeeded", job.error
    assert Example.objects.get(project=project, external_id="c3").split == "test"
    # The token is spent: posting again does not start a second job.
    again = admin_client.post(page(project) + "columns/", {"token": token, "column_text": "x"})
    assert again.status_code == 410
    assert Job.objects.filter(kind="import_dataset").count() == 1


def test_column_step_requires_the_text_column(admin_client, project):
    html = admin_client.post(
        page(project), upload("comments.csv", (FIXTURES / "comments.csv").read_bytes())
    ).content.decode()
    token = html.split('name="token" value="')[1].split('"')[0]
    response = admin_client.post(
        page(project) + "columns/", {"token": token, "column_label": "class"}
    )
    assert response.status_code == 400
    assert "Choose the column that holds the text" in response.content.decode()
    assert not Job.objects.exists()


def test_preview_partial_rereads_with_another_delimiter(admin_client, project):
    html = admin_client.post(
        page(project), upload("semi.csv", "id;text\n1;hello, world\n")
    ).content.decode()
    token = html.split('name="token" value="')[1].split('"')[0]
    partial = admin_client.get(
        page(project) + f"preview/?token={token}&delimiter=,", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "<html" not in partial  # a fragment for htmx to swap in
    assert '<th scope="col">id;text</th>' in partial


def test_htmx_column_submit_redirects_with_hx_redirect(admin_client, project):
    html = admin_client.post(page(project), upload("m.tsv", "text\tlabel\nhi\tHAM\n")).content
    token = html.decode().split('name="token" value="')[1].split('"')[0]
    response = admin_client.post(
        page(project) + "columns/",
        {"token": token, "column_text": "text", "column_label": "label"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and "Location" not in response  # django-htmx's redirect
    assert response["HX-Redirect"] == f"/jobs/{Job.objects.get().pk}/"


def test_discarding_a_staged_csv_deletes_it(admin_client, project, dirs):
    html = admin_client.post(page(project), upload("a.csv", "text\nhello\n")).content.decode()
    token = html.split('name="token" value="')[1].split('"')[0]
    assert len(list(dirs["uploads"].iterdir())) == 1
    admin_client.post(page(project) + "cancel/", {"token": token})
    assert not list(dirs["uploads"].iterdir())


# --- server paths ----------------------------------------------------------------------------


def test_server_path_import_reads_below_an_allowed_root(admin_client, project, dirs):
    target = dirs["root"] / "wrench-mini"
    import shutil

    shutil.copytree(FIXTURES / "wrench-mini", target)
    response = admin_client.post(
        page(project), {"source": "path", "path": "wrench-mini", "default_split": "pool"}
    )
    job = Job.objects.get()
    assert response.status_code == 302
    # Parameters (shown to every member) name the path below the import root, never the
    # server's folders; the worker resolves it below the roots again.
    assert job.params["format"] == "wrench" and job.params["path"] == "wrench-mini"
    assert str(dirs["root"]) not in str(job.params)
    job = run_the_job(job)
    assert job.status == "succeeded", job.error
    assert target.exists(), "server-side sources are never deleted"


@pytest.mark.parametrize(
    "raw", ["../../etc/passwd", "/etc/passwd", "/etc", "sub/../../outside.jsonl", "/nonexistent"]
)
def test_server_paths_outside_the_roots_are_refused(admin_client, project, dirs, raw):
    (dirs["root"].parent / "outside.jsonl").write_text('{"text": "secret"}\n')
    (dirs["root"] / "sub").mkdir(exist_ok=True)
    response = admin_client.post(
        page(project), {"source": "path", "path": raw, "default_split": "pool"}
    )
    assert response.status_code == 400
    assert "imports may only read below" in response.content.decode()
    assert not Job.objects.exists()


def test_symlinks_escaping_the_roots_are_refused(dirs):
    outside = dirs["root"].parent / "secret.jsonl"
    outside.write_text('{"text": "secret"}\n')
    os.symlink(outside, dirs["root"] / "link.jsonl")
    with pytest.raises(Exception, match="imports may only read below"):
        resolve_server_path("link.jsonl")
    folder = dirs["root"] / "w"
    folder.mkdir()
    os.symlink(outside, folder / "train.json")
    with pytest.raises(Exception, match="imports may only read below"):
        resolve_server_path(str(folder))


def test_missing_server_file_inside_a_root_says_so(dirs):
    with pytest.raises(Exception, match="no such file"):
        resolve_server_path("nope.jsonl")


# --- export links partial ----------------------------------------------------------------------


def test_export_links_partial_links_every_format(project):
    request = RequestFactory().get("/")
    html = render_to_string("imports/_export_links.html", {"project": project, "request": request})
    for fmt in ("jsonl", "json", "csv", "parquet", "wrench"):
        assert f"/api/v1/projects/{project.pk}/export/?format={fmt}" in html
    assert json.dumps("HAM")[1:-1] in html


def test_upload_is_kept_when_a_database_error_sends_the_job_back_to_the_queue(
    admin_client, project, monkeypatch
):
    from django.db import OperationalError

    through_columns(
        admin_client,
        project,
        admin_client.post(page(project), upload("a.jsonl", '{"text": "x"}\n')),
    )
    job = Job.objects.get()

    def lost_connection(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("workers.dataset_tasks.import_examples", lost_connection)
    with pytest.raises(OperationalError):
        run_job(job.pk, handle_import)
    job.refresh_from_db()
    assert job.status == "queued"
    assert services.staged_path(job.params["path"]).exists(), "the retry needs the upload"


def test_htmx_source_step_swaps_in_the_column_step_or_the_form_with_errors(admin_client, project):
    columns = admin_client.post(
        page(project), upload("a.csv", "text,label\nhi,HAM\n"), HTTP_HX_REQUEST="true"
    )
    assert columns.status_code == 200
    html = columns.content.decode()
    assert "<html" not in html and 'name="column_text"' in html
    refused = admin_client.post(
        page(project), upload("notes.docx", "x"), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "<html" not in refused and "unsupported file type" in refused
    assert 'hx-post="/projects/' in refused


def test_annotators_never_see_the_server_path_of_an_upload(
    client, admin_client, project, annotator, dirs
):
    response = admin_client.post(page(project), upload("data.jsonl", '{"text": "x"}\n'))
    through_columns(admin_client, project, response)  # JSONL uploads pick their columns too
    job = Job.objects.get()
    client.force_login(annotator)
    for url in (f"/jobs/{job.pk}/", f"/api/v1/jobs/{job.pk}/"):
        body = client.get(url).content.decode()
        assert str(dirs["uploads"]) not in body and "/uploads/" not in body, url


def test_a_staged_name_never_reaches_outside_the_upload_folder(dirs):
    assert services.staged_path("/etc/passwd") == dirs["uploads"] / "passwd"
    assert services.staged_path("../../x.jsonl").parent == dirs["uploads"]
    with pytest.raises(Exception, match="upload it again"):
        services.staged_path("..")
