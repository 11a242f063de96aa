"""Exactly-once work: ``JobContext.commit_point`` makes "the work landed" part of the work's own
transaction, so a job is never re-run after its work committed and never commits after it was
re-queued (the race a graceful stop had with an import's final commit)."""

import threading

import pytest
from django.db import connection, transaction

from apps.datasets.models import Example
from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import JobContext, JobLost, run_job

pytestmark = pytest.mark.django_db


def _context(job: Job) -> JobContext:
    return JobContext(
        job_id=job.pk, attempt=job.attempts, params=job.params, project_id=job.project_id, log=""
    )


def _example(project, external_id: str) -> Example:
    return Example.objects.create(project=project, external_id=external_id, text=external_id)


@pytest.mark.django_db(transaction=True)  # a test transaction would wrap the call otherwise
def test_commit_point_outside_a_transaction_is_a_programming_error(make_job):
    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="w pid 1")
    with pytest.raises(RuntimeError, match="inside the work's transaction"):
        _context(job).commit_point()


def test_a_job_requeued_before_its_commit_point_rolls_its_work_back(make_job, project, sent):
    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    ctx = _context(job)
    assert services.requeue_jobs_for_shutdown(node="frugal@box") == 1
    with pytest.raises(JobLost), transaction.atomic():
        _example(project, "written-by-the-lost-run")
        ctx.commit_point()
    assert not Example.objects.filter(project=project).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.committed_at is None


def test_a_graceful_stop_leaves_a_committed_job_to_its_handler(make_job, project, sent):
    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    with transaction.atomic():
        _example(project, "kept")
        _context(job).commit_point()
    assert services.requeue_jobs_for_shutdown(node="frugal@box") == 0
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.committed_at is not None
    assert sent == []  # no second run was queued


@pytest.mark.parametrize("how", ["restart", "lost_process", "stale", "redelivered"])
def test_a_run_that_dies_after_committing_ends_succeeded_not_rerun(
    make_job, project, settings, sent, how
):
    import datetime

    from django.utils import timezone

    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    with transaction.atomic():
        _example(project, "kept")
        _context(job).commit_point()
    timeout = datetime.timedelta(seconds=settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S + 5)
    if how == "restart":
        assert services.recover_jobs_of_node(node="frugal@box") == 1
    elif how == "lost_process":
        assert services.retry_lost_job(job_id=job.pk, cause="signal 9 (SIGKILL)") == 1
    elif how == "stale":
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timeout)
        services.mark_stale_jobs()
    else:  # the broker redelivers the task; the claim must not run the handler again
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timeout)
        run_job(job.pk, lambda ctx: pytest.fail("the committed work ran a second time"))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.status, job.log)
    assert "after its work was committed" in job.log
    assert sent == []
    assert Example.objects.filter(project=project).count() == 1


def test_the_handler_finishes_normally_after_its_commit_point(make_job, project):
    job = make_job(status=JobStatus.QUEUED)

    def handler(ctx):
        with transaction.atomic():
            _example(project, "once")
            ctx.commit_point()
        ctx.progress(1.0, "done")
        return {"rows": 1}

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.result == {"rows": 1}
    assert job.committed_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_stop_during_the_commit_waits_for_it_and_then_requeues_nothing(make_job, project):
    """PostgreSQL: the re-queue UPDATE waits on the row lock commit_point holds, then finds the
    work committed. (SQLite serialises writers as a whole, so there is no interleaving to test.)"""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises all writers")
    from workers.celery_app import app

    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="frugal@box pid 10")
    ctx = _context(job)
    sent = []
    original = app.send_task
    app.send_task = lambda name, **kw: sent.append(name)
    requeued: list[int] = []
    try:
        with transaction.atomic():
            _example(project, "kept")
            ctx.commit_point()
            stopper = threading.Thread(
                target=lambda: (
                    requeued.append(services.requeue_jobs_for_shutdown(node="frugal@box")),
                    connection.close(),
                )
            )
            stopper.start()
            stopper.join(timeout=1.0)
            assert stopper.is_alive(), "the re-queue should wait for the committing transaction"
        stopper.join(timeout=30)
    finally:
        app.send_task = original
    assert requeued == [0] and sent == []
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.committed_at is not None
    assert Example.objects.filter(project=project).count() == 1
