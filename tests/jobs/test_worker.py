"""Jobs on a real Celery worker process over the real broker (Redis in CI)."""

import os
import re
import signal
import time

import pytest

from apps.jobs.models import JobStatus
from apps.jobs.services import launch_job, mark_stale_jobs, request_cancel

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def _selftest(project, user, **params):
    return launch_job(kind="selftest", project=project, user=user, params=params)


def test_progress_is_observed_while_a_real_worker_runs_the_job(
    celery_worker_process, project, admin_user, wait_for, wait_for_status
):
    job = _selftest(project, admin_user, steps=6, step_seconds=0.3)
    seen = set()

    def finished():
        job.refresh_from_db()
        if job.status == JobStatus.RUNNING:
            seen.add(round(job.progress, 2))
        return job.is_finished

    wait_for(finished, timeout=60, interval=0.05, what="the self-test to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert any(0 < p < 1 for p in seen), seen
    assert job.progress == 1.0
    assert job.result["pid"] != os.getpid()
    assert job.worker.startswith(celery_worker_process.nodename)
    assert "Step 6 of 6 done." in job.log


def test_cancel_stops_a_job_running_on_a_real_worker(
    celery_worker_process, project, admin_user, wait_for, wait_for_status
):
    job = _selftest(project, admin_user, steps=200, step_seconds=0.2)
    wait_for_status(job, JobStatus.RUNNING, timeout=60)
    request_cancel(job=job, user=admin_user)
    asked = time.monotonic()
    wait_for_status(job, JobStatus.CANCELLED, timeout=10)
    assert time.monotonic() - asked < 5
    assert job.progress < 0.5
    assert job.attempts == 1


def test_a_job_cancelled_while_queued_never_runs(
    celery_worker_process, project, admin_user, wait_for_status
):
    blocker = _selftest(project, admin_user, steps=50, step_seconds=0.1)
    wait_for_status(blocker, JobStatus.RUNNING, timeout=60)
    waiting = _selftest(project, admin_user, steps=1, step_seconds=0)
    request_cancel(job=waiting, user=admin_user)
    request_cancel(job=blocker, user=admin_user)
    after = _selftest(project, admin_user, steps=1, step_seconds=0)
    wait_for_status(after, JobStatus.SUCCEEDED, timeout=60)  # the queue moved past `waiting`
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.CANCELLED
    assert waiting.attempts == 0
    assert waiting.started_at is None


def test_failing_handler_on_a_worker_gives_users_a_one_line_error(
    celery_worker_process, project, admin_user, wait_for_status
):
    job = _selftest(project, admin_user, steps=3, step_seconds=0, fail_at_step=2)
    wait_for_status(job, JobStatus.FAILED, timeout=60)
    assert job.error == "Self-test failure requested at step 2 of 3."
    # An expected failure (JobError): its message once in the log, no traceback.
    assert "Traceback (most recent call last)" not in job.log
    assert job.log.count("Self-test failure requested at step 2 of 3.") == 1


def test_a_job_of_a_kind_no_worker_knows_fails_instead_of_waiting_forever(
    celery_worker_process, project, admin_user, wait_for_status
):
    job = launch_job(kind="no_such_kind", project=project, user=admin_user, params={})
    wait_for_status(job, JobStatus.FAILED, timeout=60)
    assert "no_such_kind" in job.error


def test_a_killed_worker_leaves_its_job_failed_not_running(
    celery_worker_process, project, admin_user, wait_for_status, settings
):
    job = _selftest(project, admin_user, steps=500, step_seconds=0.2)
    wait_for_status(job, JobStatus.RUNNING, timeout=60)
    celery_worker_process.kill()  # SIGKILL the worker and its pool process
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 2
    time.sleep(2.5)
    assert mark_stale_jobs() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The worker stopped responding")
    assert job.finished_at is not None


@pytest.mark.parametrize("celery_pool", ["prefork"])
def test_a_killed_pool_process_retries_its_job_at_once_and_the_worker_carries_on(
    celery_worker_process, project, admin_user, wait_for_status
):
    job = _selftest(project, admin_user, steps=12, step_seconds=0.25)
    wait_for_status(job, JobStatus.RUNNING, timeout=60)
    child_pid = int(re.search(r"pid (\d+)$", job.worker).group(1))
    os.kill(child_pid, signal.SIGKILL)
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=90)
    assert job.attempts == 2
    assert f"The worker process running job #{job.pk} died (signal 9 (SIGKILL)" in job.log
    assert job.celery_task_id not in job.log
    assert celery_worker_process.proc.poll() is None


def test_a_worker_restarted_after_a_crash_runs_the_interrupted_job_again(
    celery_worker_factory, project, admin_user, wait_for_status
):
    first = celery_worker_factory()
    job = _selftest(project, admin_user, steps=8, step_seconds=0.25)
    wait_for_status(job, JobStatus.RUNNING, timeout=60)
    first.kill()
    celery_worker_factory(nodename=first.nodename)  # the same node comes back
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=60)
    assert job.attempts == 2
    assert f"restarted while running job #{job.pk}; re-queued" in job.log


@pytest.fixture
def fast_maintenance(monkeypatch):
    """Workers started after this run their maintenance pass every 0.3 s."""
    monkeypatch.setenv("FRUGAL_MAINTENANCE_INTERVAL_S", "0.3")


def test_a_running_worker_fails_stale_jobs_by_itself(
    fast_maintenance, celery_worker_factory, make_job, wait_for_status
):
    import datetime

    from django.utils import timezone

    celery_worker_factory()  # ready: its start-up check is done, the periodic pass runs on
    job = make_job(
        status=JobStatus.RUNNING,
        worker="gone@elsewhere pid 1",
        heartbeat_at=timezone.now() - datetime.timedelta(minutes=10),
    )
    wait_for_status(job, JobStatus.FAILED, timeout=30)  # no page read, no call from here
    assert job.error.startswith("The worker stopped responding")
