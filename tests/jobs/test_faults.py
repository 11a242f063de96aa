"""Fault tests (issue 13): SIGTERM and SIGKILL reach a real worker (PostgreSQL + Redis) in the
middle of a real job — the self-test and an import — and the job ends succeeded after a retry,
with exactly the expected rows."""

import os
import re
import signal
import time

import pytest

from apps.datasets.models import Example
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import launch_job

pytestmark = [pytest.mark.worker, pytest.mark.slow]

ROWS = 120_000


def _running(job, timeout: float = 60, *, progress: float = 0.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == JobStatus.RUNNING and job.progress > progress:
            return job
        time.sleep(0.05)
    pytest.fail(f"job #{job.pk} never ran: {job.status} {job.message}")


def _import(project, user, tmp_path):
    from tests.datasets.test_import_worker import big_jsonl, staged_params

    path = tmp_path / "big.jsonl"
    big_jsonl(path, ROWS)
    return launch_job(kind="import_dataset", project=project, user=user, params=staged_params(path))


def _sigterm_main(worker) -> None:
    """What Ctrl-C on the stack does now: SIGTERM to the worker's main process only."""
    os.kill(worker.proc.pid, signal.SIGTERM)
    worker.proc.wait(timeout=60)


def test_sigterm_mid_selftest_requeues_the_job_and_the_next_worker_finishes_it(
    celery_worker_factory, project, admin_user, wait_for_status
):
    first = celery_worker_factory()
    job = launch_job(
        kind="selftest", project=project, user=admin_user, params={"steps": 10, "step_seconds": 0.3}
    )
    _running(job)
    started = time.monotonic()
    _sigterm_main(first)
    assert time.monotonic() - started < 15, "the handler should stop at its next progress call"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED, (job.status, job.error, first.output()[-2000:])
    assert "worker was stopped" in job.message
    celery_worker_factory()
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=90)
    assert job.attempts == 1  # a graceful stop does not use an attempt
    assert f"while running job #{job.pk}; re-queued" in job.log
    assert "graceful shutdown" in job.log and "Traceback" not in job.log


def test_sigterm_mid_import_requeues_it_and_the_rows_land_exactly_once(
    celery_worker_factory, project, admin_user, wait_for_status, tmp_path
):
    first = celery_worker_factory()
    job = _import(project, admin_user, tmp_path)
    _running(job, progress=0.05)
    _sigterm_main(first)
    job.refresh_from_db()
    if job.status == JobStatus.SUCCEEDED:
        # A fast machine can reach the import's commit point before the stop: then its handler
        # finishes it during the warm shutdown, and it must not be queued to run again.
        assert job.committed_at is not None and job.attempts == 1, job.log
    else:
        assert job.status == JobStatus.QUEUED, (job.status, job.error)
        assert job.committed_at is None
        assert Example.objects.filter(project=project).count() == 0  # rolled back, nothing half
        celery_worker_factory()
        wait_for_status(job, JobStatus.SUCCEEDED, timeout=180)
    assert job.result["rows"] == ROWS
    assert Example.objects.filter(project=project).count() == ROWS


def test_sigkill_of_the_worker_mid_import_is_retried_by_its_restart_with_exact_rows(
    celery_worker_factory, project, admin_user, wait_for_status, tmp_path
):
    first = celery_worker_factory()
    job = _import(project, admin_user, tmp_path)
    _running(job, progress=0.05)
    first.kill()  # SIGKILL the main process and its pool child, as the OOM killer would
    celery_worker_factory(nodename=first.nodename)  # runstack restarts it under its name
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=180)
    assert job.attempts == 2
    assert f"restarted while running job #{job.pk}; re-queued" in job.log
    assert Example.objects.filter(project=project).count() == ROWS


@pytest.mark.parametrize("celery_pool", ["prefork"])
def test_sigkill_of_the_pool_child_mid_import_retries_it_with_exact_rows(
    celery_worker_process, project, admin_user, wait_for_status, tmp_path
):
    job = _import(project, admin_user, tmp_path)
    job = _running(job, progress=0.05)
    os.kill(int(re.search(r"pid (\d+)$", job.worker).group(1)), signal.SIGKILL)
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=180)
    assert job.attempts == 2
    assert f"The worker process running job #{job.pk} died" in job.log
    assert Example.objects.filter(project=project).count() == ROWS
