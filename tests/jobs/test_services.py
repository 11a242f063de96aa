"""Job services: launching and routing, cancelling, stale-job detection, worker-restart recovery."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from apps.jobs import services
from apps.jobs.kinds import JOB_RESOURCES, clean_selftest_params, queue_for_kind
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import (
    launch_job,
    mark_stale_jobs,
    recover_jobs_of_node,
    request_cancel,
)

pytestmark = pytest.mark.django_db


def test_launch_creates_a_queued_job_and_enqueues_it_on_commit(
    project, admin_user, sent, settings, django_capture_on_commit_callbacks
):
    settings.FRUGAL_QUEUE_PREFIX = "ci7-"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = launch_job(kind="selftest", project=project, user=admin_user, params={"steps": 2})
    assert job.status == JobStatus.QUEUED
    assert job.launched_by == admin_user
    assert sent == []  # nothing is sent before the transaction commits
    for callback in callbacks:
        callback()
    assert len(sent) == 1
    assert sent[0]["name"] == "frugal.selftest"
    assert sent[0]["args"] == [job.pk]
    assert sent[0]["queue"] == "ci7-cpu"
    assert sent[0]["task_id"] == job.celery_task_id


@pytest.mark.parametrize(
    ("kind", "gpu_workers", "expected"),
    [
        # The language-model pass is the GPU-heavy step; a round fits small heads on features.
        ("prboost_warm_cache", True, "gpu"),
        ("prboost_warm_cache", False, "cpu"),
        ("train_prboost_round", True, "cpu"),
        ("train_prboost_finalize", True, "cpu"),
        ("import_dataset", True, "interactive"),  # a person waits for it
        ("selftest", True, "cpu"),
        # Undeclared kinds run on cpu whatever their name says.
        ("train_something_undeclared", True, "cpu"),
    ],
)
def test_queue_routing_follows_the_declared_resource(settings, kind, gpu_workers, expected):
    settings.FRUGAL_GPU_WORKERS = gpu_workers
    assert queue_for_kind(kind) == expected


def test_deployment_mapping_overrides_the_declared_resource(settings, monkeypatch):
    settings.FRUGAL_GPU_WORKERS = True
    monkeypatch.setitem(JOB_RESOURCES, "lorc_compress", "gpu")
    settings.FRUGAL_JOB_QUEUES = {"prboost_warm_cache": "cpu"}
    assert queue_for_kind("lorc_compress") == "gpu"
    assert queue_for_kind("prboost_warm_cache") == "cpu"


def test_declaring_an_unknown_resource_is_refused():
    from apps.jobs.kinds import declare_kind

    with pytest.raises(ValueError, match="unknown resource"):
        declare_kind(kind="x_kind", resource="tpu")
    assert "x_kind" not in JOB_RESOURCES


def test_gpu_job_is_sent_to_the_prefixed_gpu_queue(
    project, admin_user, sent, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.FRUGAL_GPU_WORKERS = True
    settings.FRUGAL_QUEUE_PREFIX = "x-"
    monkeypatch.setitem(JOB_RESOURCES, "train_student", "gpu")
    with django_capture_on_commit_callbacks(execute=True):
        job = launch_job(kind="train_student", project=project, user=admin_user, params={})
    assert job.queue == "gpu"
    assert sent[0]["queue"] == "x-gpu"


@pytest.mark.parametrize("kind", ["", "Train", "rm -rf", "a" * 65, None])
def test_launch_rejects_malformed_kinds_and_creates_nothing(project, admin_user, kind):
    with pytest.raises(ValidationError):
        launch_job(kind=kind, project=project, user=admin_user, params={})
    assert not Job.objects.exists()


def test_launch_rejects_params_that_are_not_an_object(project, admin_user):
    with pytest.raises(ValidationError):
        launch_job(kind="selftest", project=project, user=admin_user, params=[1, 2])
    assert not Job.objects.exists()


def test_unreachable_broker_fails_the_job_with_a_clear_message(
    project, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    from workers.celery_app import app

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("Connection refused")

    monkeypatch.setattr(app, "send_task", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        job = launch_job(kind="selftest", project=project, user=admin_user, params={})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Could not reach the job queue" in job.error


def test_eager_mode_runs_the_job_in_process_at_commit(
    project, admin_user, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with django_capture_on_commit_callbacks(execute=True):
        job = launch_job(
            kind="selftest",
            project=project,
            user=admin_user,
            params={"steps": 3, "step_seconds": 0},
        )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["steps"] == 3
    assert "Step 3 of 3 done." in job.log


def test_eager_mode_fails_a_job_of_unknown_kind(
    project, admin_user, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with django_capture_on_commit_callbacks(execute=True):
        job = launch_job(kind="no_such_kind", project=project, user=admin_user, params={})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "no_such_kind" in job.error


def test_cancelling_a_queued_job_cancels_it_at_once_and_revokes_it(
    make_job, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    revoked = []
    monkeypatch.setattr(services, "_revoke", revoked.append)
    job = make_job(celery_task_id="task-123")
    with django_capture_on_commit_callbacks(execute=True):
        job = request_cancel(job=job, user=admin_user)
    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert "Cancelled by owner before it started" in job.log
    assert revoked == ["task-123"]


def test_cancelling_a_running_job_asks_it_to_stop(make_job, admin_user):
    job = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=timezone.now())
    job = request_cancel(job=job, user=admin_user)
    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested is True
    assert "Cancel requested by owner" in job.message


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_cancelling_a_finished_job_is_refused_and_changes_nothing(make_job, admin_user, status):
    job = make_job(status=status)
    with pytest.raises(ValidationError, match="already finished"):
        request_cancel(job=job, user=admin_user)
    job.refresh_from_db()
    assert job.status == status
    assert job.cancel_requested is False


def test_annotators_cannot_cancel_jobs(make_job, annotator):
    job = make_job()
    with pytest.raises(PermissionDenied):
        request_cancel(job=job, user=annotator)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_running_job_without_a_recent_heartbeat_is_marked_failed(make_job, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 60
    now = timezone.now()
    stale = make_job(
        status=JobStatus.RUNNING,
        heartbeat_at=now - datetime.timedelta(seconds=61),
        worker="gone@host pid 9",
    )
    fresh = make_job(status=JobStatus.RUNNING, heartbeat_at=now - datetime.timedelta(seconds=5))
    queued = make_job()
    assert mark_stale_jobs() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    queued.refresh_from_db()
    assert stale.status == JobStatus.FAILED
    assert stale.error.startswith("The worker stopped responding (")
    assert "gone@host pid 9" in stale.error
    assert stale.finished_at is not None
    assert fresh.status == JobStatus.RUNNING
    assert queued.status == JobStatus.QUEUED


def test_worker_restart_requeues_its_unfinished_jobs_or_fails_them_past_max_attempts(
    make_job, settings, sent
):
    settings.FRUGAL_JOB_MAX_ATTEMPTS = 2
    retry = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    give_up = make_job(status=JobStatus.RUNNING, attempts=2, worker="frugal@box pid 10")
    other = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@boxer pid 3")
    old_task_id = retry.celery_task_id
    assert recover_jobs_of_node(node="frugal@box") == 2
    for job in (retry, give_up, other):
        job.refresh_from_db()
    assert retry.status == JobStatus.QUEUED
    assert retry.celery_task_id != old_task_id
    assert [m["args"] for m in sent] == [[retry.pk]]
    assert give_up.status == JobStatus.FAILED
    assert "restarted" in give_up.error
    assert other.status == JobStatus.RUNNING


def test_a_graceful_stop_requeues_without_using_an_attempt_and_names_the_job(
    make_job, settings, sent
):
    settings.FRUGAL_JOB_MAX_ATTEMPTS = 1
    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    assert services.requeue_jobs_for_shutdown(node="frugal@box") == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempts == 0
    assert f"while running job #{job.pk}; re-queued" in job.log
    assert "worker was stopped" in job.message
    assert [m["args"] for m in sent] == [[job.pk]]


def test_a_lost_pool_process_is_retried_while_attempts_remain_then_failed(make_job, settings, sent):
    from workers.celery_app import _lost_cause

    settings.FRUGAL_JOB_MAX_ATTEMPTS = 2
    retry = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    last = make_job(status=JobStatus.RUNNING, attempts=2, worker="frugal@box pid 11")
    cause = _lost_cause(Exception("Worker exited prematurely: signal 9 (SIGKILL) Job: 0."))
    assert cause == "signal 9 (SIGKILL)"
    assert services.retry_lost_job(job_id=retry.pk, cause=cause) == 1
    assert services.retry_lost_job(job_id=last.pk, cause=cause) == 1
    retry.refresh_from_db()
    last.refresh_from_db()
    assert retry.status == JobStatus.QUEUED and retry.attempts == 1
    assert last.status == JobStatus.FAILED
    assert last.error.startswith(f"The worker process running job #{last.pk} died (signal 9")
    assert "attempt 2 of 2" in last.error and "Job: 0" not in last.error


def test_selftest_params_are_validated():
    assert clean_selftest_params({}) == {"steps": 5, "step_seconds": 0.5}
    assert clean_selftest_params({"steps": 3, "fail_at_step": 2})["fail_at_step"] == 2
    too_long = {"steps": 1000, "step_seconds": 60}
    for bad in (
        {"steps": 0},
        {"steps": "5"},
        {"steps": 2.5},
        {"fail_at_step": 9},
        {"x": 1},
        too_long,
    ):
        with pytest.raises(ValidationError):
            clean_selftest_params(bad)
