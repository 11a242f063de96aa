"""The job lifecycle every job kind goes through: claim, heartbeat, progress, cancel, finish, fail.

A Celery task (``workers/<area>_tasks.py``) is a few lines around a plain handler function::

    @app.task(name="frugal.my_kind")
    def my_kind(job_id):
        run_job(job_id, handle_my_kind)

    def handle_my_kind(ctx: JobContext) -> dict:
        for i, batch in enumerate(batches):
            ctx.progress(i / len(batches), "Scoring")   # also where a cancel takes effect
            ...
        return {"scored": n}                              # stored as the job's result

The Job row is the source of truth. Every write made on behalf of a run is conditional on the
row still being ``running`` under this run's attempt number, so a run that lost its job (found
dead and failed, or re-run after a redelivery) can never overwrite the job's state. Nothing here
imports Celery's app: ``workers/`` is the wiring that calls :func:`run_job`.

Retry policy (see also ``FrugalTask`` in ``workers/celery_app.py``):
- a finished job (succeeded, failed, cancelled) is never run again;
- a job found ``running`` whose heartbeat is fresh and whose worker is another process is left
  alone (the broker redelivered a message while its worker is alive);
- a job found ``running`` with a stale heartbeat (its worker died and the broker redelivered it)
  is re-run, up to ``max_attempts()`` attempts in all, after which it is marked failed;
- a transient database error (``OperationalError``/``InterfaceError``) puts the job back to
  ``queued`` and is re-raised, and Celery retries the task with exponential backoff;
- any other exception fails the job with a one-line message for users; the traceback goes to the
  job's log only;
- a handler whose work commits in one transaction calls ``ctx.commit_point()`` last inside it:
  the work then commits only if this run still owns the job, and a job whose work committed is
  never run again (a stop or crash before its finish ends it succeeded), so the work lands once.
"""

import datetime
import decimal
import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from apps.jobs.models import Job, JobStatus

logger = logging.getLogger("frugal.jobs")

LOG_MAX_CHARS = 200_000  # Job.log keeps the most recent lines within this size
MESSAGE_MAX_CHARS = 500
ERROR_MAX_CHARS = 4000  # one line, but room for a list of import problems
WRITE_MIN_INTERVAL_S = 0.5  # progress/log writes and cancel checks: at most ~2 per second
DEFAULT_MAX_ATTEMPTS = 3

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobLost",
    "fail_job",
    "max_attempts",
    "run_job",
    "to_json",
    "user_error",
    "worker_identity",
]


class JobCancelled(Exception):
    """Raised inside a handler when the job was cancelled; the run ends as ``cancelled``."""


class JobLost(JobCancelled):
    """This run no longer owns its job (failed as unresponsive, or re-run by another attempt)."""


class JobError(Exception):
    """An error whose message is written for users: it is shown as is, without a type name."""


def max_attempts() -> int:
    """How many times a job may be started in all (redeliveries after a worker died count)."""
    return int(getattr(settings, "FRUGAL_JOB_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


def heartbeat_interval_s() -> float:
    """Heartbeats come several times per timeout so one slow write is not taken for death."""
    return max(0.2, min(10.0, settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S / 4))


def worker_identity() -> str:
    """``<celery node name> pid <pid>``: which process is running a job."""
    node = None
    try:
        from celery import current_task

        if current_task and not current_task.request.is_eager:
            node = current_task.request.hostname
    except Exception:  # noqa: BLE001 - identity is informative only
        node = None
    return f"{node or socket.gethostname()} pid {os.getpid()}"


def user_error(exc: BaseException) -> str:
    """A one-line message for users; the type name is added unless the error speaks to users."""
    text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    text = " ".join(text.split())
    if not isinstance(exc, JobError | ValidationError | ValueError) or not text:
        name = type(exc).__name__
        text = f"Internal error ({name}: {text})" if text else f"Internal error ({name})"
        text += "; the job log has the details."
    if len(text) > ERROR_MAX_CHARS:
        text = text[: ERROR_MAX_CHARS - 1] + "…"
    return text


def to_json(value):
    """A JSON-ready copy of a handler's result: numpy scalars/arrays, paths, dates converted;
    NaN and infinities become ``None`` (PostgreSQL's jsonb rejects them)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return to_json(float(value))
    if isinstance(value, PurePath | uuid.UUID):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return to_json(value.tolist())
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored as JSON")


class JobContext:
    """What a handler gets: its job's params, progress reporting, a log, cooperative cancel."""

    def __init__(self, *, job_id: int, attempt: int, params: dict, project_id, log: str):
        self.job_id = job_id
        self._attempt = attempt
        self._params = params or {}
        self._project_id = project_id
        self._lock = threading.RLock()
        self._log = log
        self._log_dirty = False
        self._pending: tuple[float | None, str | None] | None = None
        self._last_write = 0.0
        self._cancelled = False
        self._lost = False
        self._committing = False

    @property
    def params(self) -> dict:
        return self._params

    @property
    def project_id(self) -> int | None:
        return self._project_id

    @property
    def attempt(self) -> int:
        return self._attempt

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0-1) and an optional message (empty keeps the previous one).

        Writes at most ~2 times per second (always the final 1.0); raises JobCancelled when a
        cancel was requested, which is how a running job stops.
        """
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = 0.0
        fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
        message = (message or "").strip()[:MESSAGE_MAX_CHARS] or None
        with self._lock:
            self._pending = (fraction, message or (self._pending or (None, None))[1])
            if fraction >= 1.0 or self._due():
                self._flush()
        self._raise_if_stopped()

    def log(self, line: str) -> None:
        """Append a timestamped line to the job's log (kept to the most recent ~200 kB)."""
        stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
        logger.info("job %s: %s", self.job_id, line)
        with self._lock:
            self._log = _bounded_log(f"{self._log}{stamp} {line.rstrip()}\n")
            self._log_dirty = True
            if self._due():
                self._flush()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if a cancel was requested (a DB read at most ~2 times a second)."""
        with self._lock:
            if self._due():
                self._flush()
        self._raise_if_stopped()

    def commit_point(self) -> None:
        """Call inside the transaction that makes the handler's work durable, as its last step
        before the commit (nothing after it in that transaction may report through this context).

        Locks the job's row and raises JobLost — rolling the work back — unless this run still
        owns the job (a graceful stop may have re-queued it since the last progress call);
        otherwise marks the work committed in that same transaction. A job whose work is
        committed is never run again: a stop or crash between the commit and the finish ends
        it as succeeded instead of re-queueing it, which would do the work twice.
        """
        if not connection.in_atomic_block:
            raise RuntimeError("commit_point() must be called inside the work's transaction")
        with self._lock:
            # The heartbeat would wait on this row lock while holding self._lock; it pauses
            # until the commit (on_commit) instead.
            self._committing = True
            if not list(self._owned().select_for_update().values_list("pk", flat=True)):
                self._lost = True
                raise JobLost("this worker no longer owns the job; its work was rolled back")
            self._owned().update(committed_at=timezone.now(), heartbeat_at=timezone.now())
        transaction.on_commit(self._committed)

    def _committed(self) -> None:
        self._committing = False

    # -- internals -------------------------------------------------------------------------

    def _due(self) -> bool:
        return time.monotonic() - self._last_write >= WRITE_MIN_INTERVAL_S

    def _raise_if_stopped(self) -> None:
        if self._lost:
            raise JobLost("this worker no longer owns the job")
        if self._cancelled:
            raise JobCancelled("cancel requested")

    def _owned(self):
        return Job.objects.filter(pk=self.job_id, status=JobStatus.RUNNING, attempts=self._attempt)

    def _flush(self, *, from_heartbeat: bool = False) -> None:
        """Write heartbeat, pending progress and log; learn whether a cancel was requested.

        Only the handler's own thread concludes that the job was lost: the heartbeat thread
        has its own connection, which may not see the row yet (e.g. inside a test transaction).
        """
        with self._lock:
            fields: dict = {"heartbeat_at": timezone.now()}
            if self._pending is not None:
                fraction, message = self._pending
                fields["progress"] = fraction
                if message is not None:
                    fields["message"] = message
            if self._log_dirty:
                fields["log"] = self._log
            updated = self._owned().filter(cancel_requested=False).update(**fields)
            if not updated:
                if self._owned().exists():  # still ours, so a cancel was requested
                    self._owned().update(**fields)
                    self._cancelled = True
                elif from_heartbeat:
                    return  # keep what is pending; the handler's thread writes or finds out
                else:
                    self._lost = True
            self._pending = None
            self._log_dirty = False
            self._last_write = time.monotonic()

    def _beat(self, interval: float) -> None:
        """Called by the heartbeat thread every ~0.5 s: flushes pending progress and log lines
        that the throttle held back, and writes the heartbeat every ``interval`` seconds."""
        with self._lock:
            if self._lost or self._committing:
                return
            since = time.monotonic() - self._last_write
            dirty = self._pending is not None or self._log_dirty
            if since >= interval or (dirty and since >= WRITE_MIN_INTERVAL_S):
                self._flush(from_heartbeat=True)

    def _finish(self, status: str, **fields) -> bool:
        with self._lock:
            now = timezone.now()
            fields.update(status=status, finished_at=now, heartbeat_at=now, log=self._log)
            if self._pending is not None and "progress" not in fields:
                fields["progress"] = self._pending[0]
            updated = self._owned().update(**fields)
            self._log_dirty = False
            self._pending = None
            return bool(updated)


def _bounded_log(text: str) -> str:
    if len(text) <= LOG_MAX_CHARS:
        return text
    keep = text[-int(LOG_MAX_CHARS * 0.9) :]
    keep = keep[keep.find("\n") + 1 :] if "\n" in keep else keep
    return "[… earlier lines dropped to keep the log small …]\n" + keep


class _Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` every few seconds while a handler runs, even without progress."""

    def __init__(self, ctx: JobContext, interval: float):
        super().__init__(name=f"job-{ctx.job_id}-heartbeat", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(min(0.5, self.interval)):
                try:
                    self.ctx._beat(self.interval)
                except Exception:  # a failed beat must not kill the thread; the next one retries
                    logger.exception("job %s: heartbeat write failed", self.ctx.job_id)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def _claim(job_id: int, me: str):
    """Move the job to ``running`` for this process; None when it must not run (see module)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist; nothing to run", job_id)
            return None
        if job.is_finished:
            logger.info("job %s already %s; not running it again", job_id, job.status)
            return None
        now = timezone.now()
        stamp = now.strftime("%Y-%m-%d %H:%M:%S")
        if job.committed_at is not None:
            # An earlier run committed its work and stopped before finishing (see
            # JobContext.commit_point): running it again would do the work twice.
            job.status = JobStatus.SUCCEEDED
            job.finished_at = now
            job.progress = 1.0
            job.message = "Done (its worker stopped after the work was saved)."
            job.log += (
                f"{stamp} Attempt {job.attempts} stopped after its work was committed; the work "
                "stands, nothing to redo.\n"
            )
            job.save(update_fields=["status", "finished_at", "progress", "message", "log"])
            return None
        if job.status == JobStatus.RUNNING:
            timeout = datetime.timedelta(seconds=settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S)
            alive = job.heartbeat_at is not None and job.heartbeat_at > now - timeout
            if alive and job.worker != me:
                logger.info("job %s is running on %s; not starting it twice", job_id, job.worker)
                return None
            job.log += f"{stamp} Attempt {job.attempts} on {job.worker} stopped unfinished.\n"
        if job.cancel_requested:
            job.status = JobStatus.CANCELLED
            job.finished_at = now
            job.message = "Cancelled."
            job.save(update_fields=["status", "finished_at", "message", "log"])
            return None
        if job.attempts >= max_attempts():
            job.status = JobStatus.FAILED
            job.finished_at = now
            job.message = "Failed."
            job.error = (
                f"Gave up after {job.attempts} attempts: the worker running this job stopped "
                "each time (crashed, killed, or out of memory)."
            )
            job.save(update_fields=["status", "finished_at", "message", "error", "log"])
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.worker = me[:200]
        job.started_at = now
        job.heartbeat_at = now
        job.progress = 0.0
        job.error = ""
        job.message = "Started."
        job.log = _bounded_log(f"{job.log}{stamp} Attempt {job.attempts} started on {me}.\n")
        job.save(
            update_fields=[
                "status",
                "attempts",
                "worker",
                "started_at",
                "heartbeat_at",
                "progress",
                "error",
                "message",
                "log",
            ]
        )
        return job


def run_job(job_id: int, handler: Callable[[JobContext], dict | None]) -> None:
    """Run ``handler`` for the job, keeping its row's state right whatever happens."""
    me = worker_identity()
    job = _claim(job_id, me)
    if job is None:
        return
    ctx = JobContext(
        job_id=job.pk,
        attempt=job.attempts,
        params=job.params,
        project_id=job.project_id,
        log=job.log,
    )
    heartbeat = _Heartbeat(ctx, heartbeat_interval_s())
    heartbeat.start()
    started = time.monotonic()
    try:
        try:
            result = handler(ctx)
        finally:
            heartbeat.stop()
        result = to_json(result)
    except JobLost:
        logger.warning("job %s: this run lost the job (failed as stale or re-run)", job_id)
        return
    except JobCancelled:
        ctx.log("Cancelled; stopped.")
        ctx._finish(JobStatus.CANCELLED, message="Cancelled.")
        return
    except (OperationalError, InterfaceError) as exc:
        # A transient database error: hand the job back to the queue, let Celery retry.
        ctx.log("Database error; the task will be retried:\n" + traceback.format_exc())
        try:
            ctx._owned().update(
                status=JobStatus.QUEUED,
                message="Waiting to retry after a database error.",
                log=ctx._log,
            )
        except Exception:  # noqa: BLE001 - the database may still be down; the retry will tell
            logger.warning("job %s: could not record the retry: %s", job_id, exc)
        raise
    except Exception as exc:
        if isinstance(exc, JobError | ValidationError):
            # An expected failure, written for users: its message once, no traceback.
            ctx.log(f"Failed: {user_error(exc)}")
        else:
            ctx.log("Failed:\n" + traceback.format_exc())
        ctx._finish(JobStatus.FAILED, message="Failed.", error=user_error(exc))
        return
    ctx.log(f"Succeeded in {time.monotonic() - started:.1f} s.")
    # A task may say what it did in one line (``result["summary"]``), e.g. why nothing was written.
    summary = result.get("summary") if isinstance(result, dict) else None
    message = str(summary)[:500] if summary else "Done."
    if not ctx._finish(JobStatus.SUCCEEDED, progress=1.0, message=message, result=result):
        logger.warning("job %s: finished, but the job was taken over meanwhile", job_id)


def fail_job(job_id: int, error: str) -> bool:
    """Mark an unfinished job failed (used when the task itself could not run it)."""
    now = timezone.now()
    updated = Job.objects.filter(
        pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).update(
        status=JobStatus.FAILED, error=error[:ERROR_MAX_CHARS], message="Failed.", finished_at=now
    )
    return bool(updated)
