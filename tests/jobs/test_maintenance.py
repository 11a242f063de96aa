"""The periodic repair pass: workers fail stale jobs and close rounds whose job is over."""

import datetime
import time

import pytest
from django.utils import timezone

from apps.jobs.models import JobStatus
from apps.training.models import Round, RoundStatus
from workers.maintenance_tasks import MaintenanceTimer, maintenance_task, run_maintenance


def _stale(make_job, **fields):
    return make_job(
        status=JobStatus.RUNNING,
        worker="gone@host pid 9",
        heartbeat_at=timezone.now() - datetime.timedelta(minutes=10),
        **fields,
    )


def test_the_pass_fails_stale_jobs_and_closes_their_rounds(make_job, project, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 30
    job = _stale(make_job, kind="prboost_round")
    fresh = make_job(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    rnd = Round.objects.create(project=project, number=1, status=RoundStatus.RUNNING, job=job)
    assert run_maintenance() == {"stale_jobs": 1, "rounds": 1}
    job.refresh_from_db()
    rnd.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == JobStatus.FAILED and "stopped responding" in job.error
    assert rnd.status == RoundStatus.FAILED and rnd.error == job.error
    assert fresh.status == JobStatus.RUNNING
    assert run_maintenance() == {"stale_jobs": 0, "rounds": 0}  # idempotent


def test_the_task_is_the_same_pass(make_job, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 30
    job = _stale(make_job)
    assert maintenance_task.apply().get() == {"stale_jobs": 1, "rounds": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


@pytest.mark.django_db(transaction=True)
def test_the_workers_timer_runs_the_pass_periodically(make_job, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 30
    job = _stale(make_job)
    timer = MaintenanceTimer(interval=0.05)
    timer.start()
    try:
        deadline = time.monotonic() + 10
        while timer.passes < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        timer.stop()
    assert timer.passes >= 2 and not timer.is_alive()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
