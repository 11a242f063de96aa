"""The distill job on a real Celery worker process: end to end, cancel, and a killed worker that
leaves the previous serving student in place."""

import time

import pytest

from apps.distill import services
from apps.distill.models import DistillRun, Prediction
from apps.jobs.models import JobStatus
from apps.jobs.services import mark_stale_jobs, request_cancel

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def _wait_running_students(job, timeout: float = 180.0) -> None:
    """Until the job reports student training (past the teacher's cross-fitting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == JobStatus.RUNNING and "student" in job.message:
            return
        assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), job.error + job.log[-2000:]
        time.sleep(0.1)
    pytest.fail(f"job {job.pk} never reached the students: {job.status} {job.message}")


def test_a_distillation_end_to_end_on_a_worker(
    celery_worker_process, spam_project, admin_user, fast_params, wait_for_status
):
    job = services.launch_distillation(project=spam_project, user=admin_user, params=fast_params)
    wait_for_status(job, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log[-3000:]
    assert job.progress == 1.0
    assert job.queue in ("cpu", "gpu")
    assert [s["loss"] for s in job.result["students"]] == ["ce", "kd", "ls", "ptloss"]
    serving = services.serving_student(project=spam_project)
    assert serving.run.job_id == job.pk and serving.loss == job.result["chosen"]
    assert Prediction.objects.filter(project=spam_project).count() == 72
    assert "Serving student" in job.log


def test_cancel_stops_the_job_and_keeps_the_previous_serving_student(
    celery_worker_process, spam_project, admin_user, fast_params, wait_for_status
):
    services.run_distillation(project=spam_project, params={**fast_params, "losses": ["kd"]})
    before = services.serving_student(project=spam_project)
    job = services.launch_distillation(
        project=spam_project, user=admin_user, params={**fast_params, "epochs": 20}
    )
    _wait_running_students(job)
    request_cancel(job=job, user=admin_user)
    wait_for_status(job, JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=60)
    assert job.status == JobStatus.CANCELLED, job.error
    assert services.serving_student(project=spam_project) == before
    assert DistillRun.objects.count() == 1
    assert set(Prediction.objects.values_list("student", flat=True)) == {before.pk}


def test_a_killed_worker_leaves_the_previous_serving_student(
    celery_worker_factory, spam_project, admin_user, fast_params, settings
):
    services.run_distillation(project=spam_project, params={**fast_params, "losses": ["kd"]})
    before = services.serving_student(project=spam_project)
    predictions = sorted(Prediction.objects.values_list("example", "label", "student"))
    worker = celery_worker_factory()
    job = services.launch_distillation(
        project=spam_project, user=admin_user, params={**fast_params, "epochs": 20}
    )
    _wait_running_students(job)
    worker.kill()  # SIGKILL mid-training, as an out-of-memory kill would
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    mark_stale_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert services.serving_student(project=spam_project) == before
    assert sorted(Prediction.objects.values_list("example", "label", "student")) == predictions
    assert DistillRun.objects.count() == 1
