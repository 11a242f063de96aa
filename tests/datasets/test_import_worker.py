"""An import job enqueued over the broker and run by a real Celery worker process."""

import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.datasets.import_services import build_params, stage_upload, staged_path, start_import
from apps.datasets.models import Example
from apps.jobs.models import Job
from apps.jobs.services import request_cancel

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def big_jsonl(path, rows: int):
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            label = "SPAM" if i % 3 == 0 else "HAM"
            split = "dev" if i % 50 == 0 else "pool"
            text = f"comment number {i}: check out my channel, it has videos about {i % 97}"
            out.write(json.dumps({"id": f"r{i}", "text": text, "label": label, "split": split}))
            out.write("\n")


def staged_params(path) -> dict:
    """Stage the file as the import page does with an upload (the worker deletes it after)."""
    uploaded = SimpleUploadedFile("big.jsonl", path.read_bytes())
    staged, name = stage_upload(uploaded=uploaded)
    return build_params(source="upload", path=staged, fmt="jsonl", display_name=name)


def watch(job: Job, timeout: float = 120) -> tuple[Job, list[float]]:
    """Poll the job row until it finishes; returns it and the progress values seen running."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == "running":
            seen.append(job.progress)
        if job.is_finished:
            return job, seen
        time.sleep(0.05)
    pytest.fail(f"the import job did not finish in {timeout} s (status {job.status})")


def test_import_job_runs_on_a_real_worker_with_visible_progress(
    celery_worker_process, project, admin_user, tmp_path
):
    path = tmp_path / "big.jsonl"
    big_jsonl(path, 150_000)
    params = staged_params(path)
    job = start_import(project=project, user=admin_user, params=params)
    job, seen = watch(job)
    assert job.status == "succeeded", job.error + celery_worker_process.output()[-3000:]
    assert job.result["rows"] == 150_000 and job.result["splits"]["dev"] == 3000
    assert any(0 < p < 1 for p in seen), f"no progress seen while running: {seen[:20]}"
    assert "rows read" in job.message or job.message == "Done."
    assert Example.objects.filter(project=project).count() == 150_000
    assert "Imported 150,000 examples" in job.log
    assert not staged_path(params["path"]).exists(), "the staged upload is deleted after the job"


def test_cancelling_a_running_import_rolls_it_back(
    celery_worker_process, project, admin_user, tmp_path
):
    path = tmp_path / "big.jsonl"
    big_jsonl(path, 400_000)
    params = staged_params(path)
    job = start_import(project=project, user=admin_user, params=params)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == "running" and job.progress > 0:
            break
        time.sleep(0.05)
    request_cancel(job=job, user=admin_user)
    job, _ = watch(job)
    assert job.status == "cancelled", job.error
    assert not Example.objects.filter(project=project).exists()
    assert not staged_path(params["path"]).exists()
