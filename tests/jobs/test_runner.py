"""The task base, run in-process: state transitions, progress, cancel, errors, redelivery."""

import datetime
import time

import numpy as np
import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import LOG_MAX_CHARS, JobCancelled, JobError, run_job, worker_identity

pytestmark = pytest.mark.django_db


def test_successful_handler_stores_result_and_full_progress(make_job):
    job = make_job(params={"n": 3})
    seen = {}

    def handler(ctx):
        seen["params"] = ctx.params
        seen["project_id"] = ctx.project_id
        ctx.progress(0.5, "Halfway")
        ctx.log("working")
        return {"answer": 42}

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress == 1.0
    assert job.result == {"answer": 42}
    assert job.attempts == 1
    assert job.started_at and job.finished_at and job.worker
    assert "working" in job.log
    assert seen == {"params": {"n": 3}, "project_id": job.project_id}


def test_a_result_summary_becomes_the_finished_jobs_message(make_job):
    job = make_job()
    run_job(job.pk, lambda ctx: {"written": 0, "summary": "0 labels written: no rules."})
    job.refresh_from_db()
    assert job.message == "0 labels written: no rules."
    other = make_job()
    run_job(other.pk, lambda ctx: {"written": 3})
    other.refresh_from_db()
    assert other.message == "Done."


def test_progress_writes_are_throttled_but_the_final_one_always_lands(make_job):
    job = make_job()
    observed = []

    def handler(ctx):
        with CaptureQueriesContext(connection) as queries:
            for i in range(2000):
                ctx.progress(i / 2000, "Looping")
            ctx.progress(1.0, "Done looping")
        observed.append(sum(1 for q in queries if q["sql"].upper().startswith("UPDATE")))
        observed.append(Job.objects.get(pk=job.pk).progress)

    run_job(job.pk, handler)
    updates, progress_in_db = observed
    assert updates <= 5, f"{updates} UPDATEs for 2001 progress calls"
    assert progress_in_db == 1.0


def test_empty_progress_message_keeps_the_previous_one(make_job):
    job = make_job()

    def handler(ctx):
        ctx.progress(0.2, "Scoring rules")
        time.sleep(0.55)
        ctx.progress(0.4)
        return Job.objects.values_list("message", "progress").get(pk=job.pk)

    messages = []
    run_job(job.pk, lambda ctx: messages.append(handler(ctx)))
    assert messages == [("Scoring rules", 0.4)]


def test_failed_handler_shows_one_line_error_and_keeps_traceback_in_log(make_job):
    job = make_job()

    def handler(ctx):
        raise ValueError("Unknown label 'maybe' on line 3\nof the file")

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "Unknown label 'maybe' on line 3 of the file"
    assert "Traceback" not in job.error
    assert "Traceback (most recent call last)" in job.log
    assert "ValueError" in job.log


def test_internal_errors_name_their_type_for_users(make_job):
    job = make_job()
    run_job(job.pk, lambda ctx: {}["missing"])
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Internal error (KeyError: 'missing')")
    assert "\n" not in job.error


def test_job_error_message_is_shown_as_written(make_job):
    job = make_job()

    def handler(ctx):
        raise JobError("The dev set has no gold labels; label some examples first.")

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.error == "The dev set has no gold labels; label some examples first."
    # The log says it once, without a traceback.
    assert job.log.count("The dev set has no gold labels") == 1
    assert "Traceback" not in job.log and "Failed: The dev set has no gold labels" in job.log


def test_cancel_request_stops_a_running_job_at_its_next_progress_call(make_job):
    job = make_job()
    steps_done = []

    def handler(ctx):
        for step in range(10):
            if step == 3:
                Job.objects.filter(pk=job.pk).update(cancel_requested=True)
                time.sleep(0.55)  # past the write throttle, so the next call reads the flag
            ctx.progress(step / 10)
            steps_done.append(step)

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert steps_done == [0, 1, 2]
    assert job.finished_at is not None


def test_handler_raising_job_cancelled_ends_cancelled(make_job):
    job = make_job()

    def handler(ctx):
        raise JobCancelled("stop")

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_finished_job_is_not_run_again(make_job, status):
    job = make_job(status=status, attempts=1, result={"old": True})
    calls = []
    run_job(job.pk, lambda ctx: calls.append(1))
    job.refresh_from_db()
    assert calls == []
    assert job.status == status
    assert job.attempts == 1
    assert job.result == {"old": True}


def test_job_cancelled_while_queued_is_not_started(make_job):
    job = make_job(cancel_requested=True)
    calls = []
    run_job(job.pk, lambda ctx: calls.append(1))
    job.refresh_from_db()
    assert calls == []
    assert job.status == JobStatus.CANCELLED


def test_job_running_on_a_live_worker_is_not_started_twice(make_job):
    job = make_job(
        status=JobStatus.RUNNING,
        attempts=1,
        worker="other@host pid 1",
        heartbeat_at=timezone.now(),
        started_at=timezone.now(),
    )
    calls = []
    run_job(job.pk, lambda ctx: calls.append(1))
    job.refresh_from_db()
    assert calls == []
    assert job.status == JobStatus.RUNNING
    assert job.attempts == 1


def test_redelivered_job_whose_worker_died_is_run_again(make_job, settings):
    settings.FRUGAL_JOB_MAX_ATTEMPTS = 3
    old = timezone.now() - datetime.timedelta(seconds=settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S + 5)
    job = make_job(status=JobStatus.RUNNING, attempts=1, worker="dead@host pid 1", heartbeat_at=old)
    run_job(job.pk, lambda ctx: {"ok": True})
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert "stopped unfinished" in job.log


def test_redelivered_job_past_max_attempts_is_marked_failed(make_job, settings):
    settings.FRUGAL_JOB_MAX_ATTEMPTS = 2
    old = timezone.now() - datetime.timedelta(seconds=settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S + 5)
    job = make_job(status=JobStatus.RUNNING, attempts=2, worker="dead@host pid 1", heartbeat_at=old)
    calls = []
    run_job(job.pk, lambda ctx: calls.append(1))
    job.refresh_from_db()
    assert calls == []
    assert job.status == JobStatus.FAILED
    assert "Gave up after 2 attempts" in job.error


def test_run_that_lost_its_job_does_not_overwrite_it(make_job):
    job = make_job()

    def handler(ctx):
        # Meanwhile the job was failed as unresponsive (or re-run elsewhere).
        Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="stale")
        time.sleep(0.55)
        ctx.progress(0.5, "still going")
        return {"should": "not be stored"}

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "stale"
    assert job.result is None


def test_result_with_numpy_values_and_nan_is_stored_as_json(make_job):
    job = make_job()
    run_job(
        job.pk,
        lambda ctx: {"acc": np.float32(0.5), "curve": np.arange(3), "loss": float("nan")},
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"acc": 0.5, "curve": [0, 1, 2], "loss": None}


def test_unstorable_result_fails_the_job_clearly(make_job):
    job = make_job()
    run_job(job.pk, lambda ctx: {"model": object()})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "cannot be stored as JSON" in job.error


def test_log_keeps_the_most_recent_lines_within_its_bound(make_job):
    job = make_job()

    def handler(ctx):
        for i in range(4000):
            ctx.log(f"line {i:05d} " + "x" * 80)

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert len(job.log) <= LOG_MAX_CHARS + 200
    assert "line 03999" in job.log
    assert "line 00000" not in job.log
    assert "earlier lines dropped" in job.log


def test_transient_database_error_requeues_the_job_and_reraises(make_job):
    job = make_job()

    def handler(ctx):
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 1
    # The retry runs it again as the next attempt.
    run_job(job.pk, lambda ctx: {"ok": 1})
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_keeps_a_silent_job_alive(make_job, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 1  # heartbeat every 0.25 s
    job = make_job()
    beats = []

    def handler(ctx):
        first = Job.objects.get(pk=job.pk).heartbeat_at
        time.sleep(1.2)  # a long step without any progress call
        beats.append((first, Job.objects.get(pk=job.pk).heartbeat_at))

    run_job(job.pk, handler)
    first, later = beats[0]
    assert later > first + datetime.timedelta(seconds=0.5)


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_notices_a_cancel_during_a_silent_step(make_job, settings):
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 1
    job = make_job()

    def handler(ctx):
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        time.sleep(0.8)
        ctx.check_cancelled()  # the heartbeat already saw it: no wait for the throttle
        return {"finished": True}

    run_job(job.pk, handler)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_a_log_line_held_back_by_the_throttle_appears_during_a_silent_step(make_job):
    job = make_job()
    seen = []

    def handler(ctx):
        ctx.progress(0.1, "first")  # a write: the next ones within 0.5 s are held back
        ctx.log("about to load the model")
        time.sleep(1.2)  # a long step without progress calls
        seen.append(Job.objects.get(pk=job.pk).log)

    run_job(job.pk, handler)
    assert "about to load the model" in seen[0]


def test_worker_identity_names_host_and_process():
    assert f"pid {__import__('os').getpid()}" in worker_identity()
