"""Writes to jobs: launch, cancel, and the detection of jobs whose worker died.

``launch_job`` is how every app starts long work::

    job = launch_job(kind="import_dataset", project=project, user=request.user, params={...})

The job row is created at once; the Celery message ``frugal.<kind>`` is sent when the current
transaction commits (so a worker never looks for a row that is not there yet). With
``CELERY_TASK_ALWAYS_EAGER`` the task runs in-process at commit instead (tests).
"""

import datetime
import logging
import re
import uuid
from urllib.parse import urlparse

from celery import current_app
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from apps.jobs.kinds import broker_queue_name, queue_for_kind
from apps.jobs.models import FINISHED_STATUSES, Job, JobStatus
from apps.jobs.runner import max_attempts
from apps.jobs.selectors import can_manage_job

logger = logging.getLogger("frugal.jobs")

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _stamp() -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M:%S")


def launch_job(*, kind: str, project, user, params: dict | None = None) -> Job:
    """Create a queued job and enqueue ``frugal.<kind>`` on its queue when the transaction commits.

    Callers check permissions (only project admins launch jobs); ``params`` must be JSON.
    """
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValidationError(f"{kind!r} is not a job kind (lowercase letters, digits, _).")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ValidationError("Job parameters must be a JSON object.")
    job = Job(
        kind=kind,
        project=project,
        launched_by=user if user is not None and user.is_authenticated else None,
        params=params,
        queue=queue_for_kind(kind),
        celery_task_id=str(uuid.uuid4()),
        message="Waiting for a worker.",
    )
    who = job.launched_by.username if job.launched_by else "the system"
    job.log = f"{_stamp()} Launched by {who} on queue {job.queue}.\n"
    job.full_clean(exclude=["project", "launched_by"])
    job.save()
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_job(job_id=job_id))
    # [hardening, issue 13] Outside a transaction the message was sent just now: when the
    # broker did not answer, the caller gets the job as it is ("Could not be queued."), not
    # a "queued" job that will never run.
    if connection.get_autocommit():
        failed = Job.objects.filter(pk=job_id, status=JobStatus.FAILED).first()
        if failed is not None:
            job = failed
    return job


def enqueue_job(*, job_id: int) -> None:
    """Send the job's task message (or run it in-process when Celery is eager)."""
    app = current_app  # the project's Celery app (workers/celery_app.py, loaded by apps.frugal)
    job = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).first()
    if job is None:
        return
    name = f"frugal.{job.kind}"
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        app.loader.import_default_modules()
        task = app.tasks.get(name)
        if task is None:
            _fail(job, f"No worker task is registered for job kind {job.kind!r}.")
            return
        task.apply(args=[job.pk], task_id=job.celery_task_id)
        return
    try:
        app.send_task(
            name,
            args=[job.pk],
            task_id=job.celery_task_id,
            queue=broker_queue_name(job.queue),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:  # noqa: BLE001 - the broker's errors vary by transport
        logger.exception("job %s: could not enqueue", job.pk)
        # [hardening, issue 13] Say that it never got queued, not just "Failed.".
        _fail(
            job,
            f"Could not reach the job queue at {broker_display()}: {exc}. The job was not "
            "queued; launch it again when the queue answers.",
            message="Could not be queued.",
        )


def broker_display(url: str | None = None) -> str:
    """The broker URL (default: this process's) without credentials, for messages and banners."""
    url = url or settings.CELERY_BROKER_URL
    parsed = urlparse(url)
    if parsed.password or parsed.username:
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        return parsed._replace(netloc=netloc).geturl()
    return url


def _fail(job: Job, error: str, message: str = "Failed.") -> None:
    Job.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=error[:4000], message=message, finished_at=timezone.now()
    )


def request_cancel(*, job: Job, user) -> Job:
    """Cancel a job: a queued job is cancelled at once (and its message revoked); a running job
    is asked to stop and does so at its next progress call. Finished jobs cannot be cancelled."""
    if not can_manage_job(user=user, job=job):
        raise PermissionDenied("Only project admins can cancel jobs.")
    who = user.username
    now = timezone.now()
    queued = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED)
    if queued.update(
        status=JobStatus.CANCELLED,
        finished_at=now,
        message="Cancelled before it started.",
        cancel_requested=True,
    ):
        note = f"{_stamp()} Cancelled by {who} before it started.\n"
        Job.objects.filter(pk=job.pk).update(log=Concat(F("log"), Value(note)))
        task_id = job.celery_task_id
        transaction.on_commit(lambda: _revoke(task_id))
    elif Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        cancel_requested=True, message=f"Cancel requested by {who}; stopping at the next step."
    ):
        pass
    else:
        job.refresh_from_db()
        if job.status != JobStatus.CANCELLED:
            raise ValidationError(f"This job has already finished ({job.status}).")
    job.refresh_from_db()
    return job


def _revoke(task_id: str) -> None:
    """Tell workers to drop the message; the job row already says cancelled, so a worker that
    receives it anyway does not run it (this only saves it the lookup)."""
    if not task_id or getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return
    try:
        current_app.control.revoke(task_id)
    except Exception:  # noqa: BLE001 - e.g. the filesystem broker has no broadcast
        logger.info("could not broadcast the revoke of task %s", task_id, exc_info=True)


def mark_stale_jobs(*, now: datetime.datetime | None = None) -> int:
    """Fail running jobs whose heartbeat is older than FRUGAL_JOB_HEARTBEAT_TIMEOUT_S.

    Their worker died (killed, crashed, host lost); without this they would stay running.
    Returns how many jobs were failed.
    """
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S)
    stale = Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=cutoff)
    )
    failed = 0
    for job in stale:
        last = job.heartbeat_at or job.started_at or job.created_at
        seconds = int((now - last).total_seconds())
        if job.committed_at is not None:
            finish_committed(job=job, what=f"The worker stopped responding ({seconds} s)")
            continue
        error = (
            f"The worker stopped responding (no heartbeat for {seconds} s, since "
            f"{last:%Y-%m-%d %H:%M:%S} UTC, on {job.worker or 'an unknown worker'}); "
            "it was probably killed or crashed. Launch the job again to retry."
        )
        failed += Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at, committed_at=None
        ).update(status=JobStatus.FAILED, error=error, message="Failed.", finished_at=now)
    if failed:
        logger.warning("marked %d job(s) failed: their worker stopped responding", failed)
    return failed


def recover_jobs_of_node(*, node: str) -> int:
    """At worker start: jobs left running by an earlier process of this same node name are dead
    (two live workers cannot share a node name). Re-queue them while attempts remain, else fail.
    Returns how many jobs were handled."""
    if not node:
        return 0
    handled = 0
    for job in Job.objects.filter(status=JobStatus.RUNNING, worker__startswith=f"{node} pid "):
        handled += requeue_or_fail(
            job=job,
            what=f"The worker {job.worker} restarted while running job #{job.pk}",
            requeued_message="Re-queued after its worker restarted.",
        )
    return handled


def requeue_or_fail(
    *, job: Job, what: str, requeued_message: str, refund_attempt: bool = False
) -> int:
    """A running job whose run ended without finishing: queue it again while attempts remain
    (a new task message; ``refund_attempt``: this run does not count, e.g. a graceful stop),
    else fail it; ``what`` (naming Frugal's job id) goes into the log and the error. Returns 1
    if this call changed the row (it must still be the same running attempt), else 0."""
    if job.committed_at is not None:
        return finish_committed(job=job, what=what)
    now = timezone.now()
    attempts = job.attempts - 1 if refund_attempt and job.attempts > 0 else job.attempts
    # committed_at=None: on PostgreSQL this UPDATE waits for a handler committing its work at
    # that moment, then matches nothing (the work stands; the job must not run again).
    same_run = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, committed_at=None
    )
    if attempts < max_attempts() and not job.cancel_requested:
        note = f"{_stamp()} {what}; re-queued (attempt {job.attempts} of {max_attempts()}).\n"
        updated = same_run.update(
            status=JobStatus.QUEUED,
            attempts=attempts,
            message=requeued_message,
            celery_task_id=str(uuid.uuid4()),
            log=job.log + note,
        )
        if updated:
            enqueue_job(job_id=job.pk)
        return updated
    note = f"{_stamp()} {what}; no attempts left ({job.attempts} of {max_attempts()}).\n"
    return same_run.update(
        status=JobStatus.FAILED,
        message="Failed.",
        error=f"{what} (attempt {job.attempts} of {max_attempts()}); no attempts left.",
        finished_at=now,
        log=job.log + note,
    )


def requeue_jobs_for_shutdown(*, node: str) -> int:
    """A worker stopping gracefully (SIGTERM, Ctrl-C on the stack): its running jobs go back to
    the queue without using an attempt; the running handler stops at its next progress call
    (it no longer owns the job). Returns how many were re-queued."""
    if not node:
        return 0
    handled = 0
    # A job whose work is committed is left to its handler, which finishes it before the
    # worker exits (a warm shutdown waits for running tasks).
    running = Job.objects.filter(
        status=JobStatus.RUNNING, worker__startswith=f"{node} pid ", committed_at=None
    )
    for job in running:
        handled += requeue_or_fail(
            job=job,
            what=f"The worker {job.worker} was stopped (graceful shutdown) while running job "
            f"#{job.pk}",
            requeued_message="Re-queued: its worker was stopped; it runs again when a worker "
            "starts.",
            refund_attempt=True,
        )
    return handled


def finish_committed(*, job: Job, what: str) -> int:
    """A run that stopped after its work was committed (``JobContext.commit_point``) and before
    it finished: the work stands, so the job succeeded; running it again would do it twice.
    Returns 1 if this call changed the row, else 0."""
    now = timezone.now()
    note = f"{_stamp()} {what} after its work was committed; the work stands, nothing to redo.\n"
    return (
        Job.objects.filter(pk=job.pk, status__in=[JobStatus.RUNNING, JobStatus.QUEUED])
        .exclude(committed_at=None)
        .update(
            status=JobStatus.SUCCEEDED,
            progress=1.0,
            message="Done (its worker stopped after the work was saved).",
            finished_at=now,
            log=job.log + note,
        )
    )


def retry_lost_job(*, job_id: int, cause: str) -> int:
    """The pool process running job ``job_id`` died (``cause``: e.g. "signal 9 (SIGKILL)"):
    re-queue it while attempts remain, else fail it, saying so with Frugal's job id."""
    job = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).first()
    if job is None:
        return 0
    return requeue_or_fail(
        job=job,
        what=f"The worker process running job #{job.pk} died ({cause}; it may have run out "
        "of memory or been killed)",
        requeued_message="Re-queued after its worker process died.",
    )


def is_active(job: Job) -> bool:
    return job.status not in FINISHED_STATUSES
