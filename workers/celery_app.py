"""The Celery application. Start a worker with ``celery -A workers worker -Q cpu``.

(``python manage.py runstack`` starts one for you, with the queue names prefixed by
``FRUGAL_QUEUE_PREFIX`` and thread pools limited.)
"""

import logging
import os

from celery import Celery, Task, signals
from django.db import InterfaceError, OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.frugal.settings")

logger = logging.getLogger("frugal.jobs")

# Each area keeps its thin tasks in its own module; the list is the whole set.
TASK_MODULES = [
    "workers.tasks",
    "workers.dataset_tasks",
    "workers.prboost_tasks",
    "workers.distill_tasks",
]


class FrugalTask(Task):
    """Every task: transient database errors are retried with exponential backoff (1 s, 2 s, 4 s
    ... capped at 60 s, jittered, 5 retries); a task that finally fails, or that Celery could
    not run at all, leaves its job failed rather than queued or running forever."""

    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 5

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = _job_id_from_args(args, kwargs)
        if job_id is None:
            return
        from workers.base import fail_job, user_error

        try:
            fail_job(job_id, f"The task could not run the job: {user_error(exc)}")
        except Exception:  # noqa: BLE001 - the database may be the problem; stale check catches it
            logger.exception("job %s: could not record the task failure", job_id)


app = Celery("frugal", include=TASK_MODULES, task_cls=FrugalTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.broker_connection_retry_on_startup = True


def _job_id_from_args(args, kwargs) -> int | None:
    value = (kwargs or {}).get("job_id", args[0] if args else None)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@signals.worker_ready.connect
def _recover_jobs_on_worker_start(sender=None, **kwargs):
    """A worker that (re)starts fails jobs whose worker stopped answering, and hands back jobs
    that an earlier process with this same node name left running (it cannot still be alive)."""
    from apps.jobs.services import mark_stale_jobs, recover_jobs_of_node

    try:
        recover_jobs_of_node(node=getattr(sender, "hostname", "") or "")
        mark_stale_jobs()
    except Exception:  # noqa: BLE001 - never keep a worker from starting
        logger.exception("could not check for stale jobs at worker start")


@signals.task_failure.connect
def _fail_job_when_pool_process_died(sender=None, task_id=None, exception=None, **kwargs):
    """A prefork pool process killed mid-task (out of memory, signal) reaches the parent as
    WorkerLostError; the job is failed at once instead of waiting for the heartbeat timeout."""
    from billiard.exceptions import WorkerLostError

    if not isinstance(exception, WorkerLostError):
        return
    job_id = _job_id_from_args(kwargs.get("args"), kwargs.get("kwargs"))
    if job_id is None:
        return
    from workers.base import fail_job

    fail_job(
        job_id,
        f"The worker process running this job died ({exception}); it may have run out of memory.",
    )


@signals.task_unknown.connect
def _fail_job_of_unknown_kind(sender=None, name=None, id=None, message=None, **kwargs):  # noqa: A002
    """A job whose kind no worker knows would otherwise stay queued forever."""
    from apps.jobs.models import Job, JobStatus

    try:
        Job.objects.filter(celery_task_id=id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            message="Failed.",
            error=f"No worker knows how to run this job kind (task {name!r} is not registered).",
        )
    except Exception:  # noqa: BLE001
        logger.exception("could not fail the job of unknown task %s", name)
