"""The Celery application. Start a worker with ``celery -A workers worker -Q cpu``.

(``python manage.py runstack`` starts one for you, with the queue names prefixed by
``FRUGAL_QUEUE_PREFIX`` and thread pools limited.) This is wiring only: what a job does and how
its row moves through its states is in apps/ (``apps.jobs.runner``); a worker that is ready also
starts the periodic maintenance pass (workers/maintenance_tasks.py).
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
    "workers.alignment_tasks",
    "workers.lorc_tasks",
    "workers.distill_tasks",
    "workers.bulk_tasks",
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
        from apps.jobs.runner import fail_job, user_error

        try:
            fail_job(job_id, f"The task could not run the job: {user_error(exc)}")
        except Exception:  # noqa: BLE001 - the database may be the problem; stale check catches it
            logger.exception("job %s: could not record the task failure", job_id)


# Not a job kind: the periodic repair pass every worker runs (workers/maintenance_tasks.py).
MAINTENANCE_MODULE = "workers.maintenance_tasks"

app = Celery("frugal", include=[*TASK_MODULES, MAINTENANCE_MODULE], task_cls=FrugalTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.broker_connection_retry_on_startup = True
# apps.jobs sends task messages through ``celery.current_app``: in every thread, this app.
app.set_default()


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
    _start_maintenance()


_maintenance = None


def _start_maintenance() -> None:
    """The periodic repair pass (workers/maintenance_tasks.py), in this main process."""
    global _maintenance
    from workers.maintenance_tasks import MaintenanceTimer

    if _maintenance is None:
        _maintenance = MaintenanceTimer()
        _maintenance.start()


@signals.worker_shutdown.connect
def _stop_maintenance(sender=None, **kwargs):
    global _maintenance
    if _maintenance is not None:
        _maintenance.stop()
        _maintenance = None


@signals.task_failure.connect
def _retry_job_when_pool_process_died(sender=None, task_id=None, exception=None, **kwargs):
    """A prefork pool process killed mid-task (out of memory, a signal) reaches the parent as
    WorkerLostError: the job is re-queued at once while attempts remain, else failed, with a
    message naming Frugal's job id and the signal (not Celery's ids)."""
    from billiard.exceptions import WorkerLostError

    if not isinstance(exception, WorkerLostError):
        return
    job_id = _job_id_from_args(kwargs.get("args"), kwargs.get("kwargs"))
    if job_id is None:
        return
    from apps.jobs.services import retry_lost_job

    try:
        retry_lost_job(job_id=job_id, cause=_lost_cause(exception))
    except Exception:  # noqa: BLE001 - the stale-job pass catches it later
        logger.exception("job %s: could not re-queue after its pool process died", job_id)


def _lost_cause(exception) -> str:
    """ "signal 9 (SIGKILL)" or "exit code 1" from billiard's WorkerLostError text."""
    import re

    text = str(exception)
    found = re.search(r"(signal \d+(?: \(\w+\))?|exitcode \d+)", text)
    if found is None:
        return "it exited unexpectedly"
    return found.group(1).replace("exitcode", "exit code")


@signals.worker_shutting_down.connect
def _requeue_jobs_on_graceful_stop(sender=None, sig=None, how=None, **kwargs):
    """SIGTERM/SIGINT to a worker's main process (Ctrl-C on the stack): the job it runs goes
    back to the queue without using an attempt, and its handler stops at its next progress
    call (it no longer owns the job), so the warm shutdown ends quickly. The job runs again
    when a worker starts."""
    from apps.jobs.services import requeue_jobs_for_shutdown

    try:
        count = requeue_jobs_for_shutdown(node=str(sender or ""))
        if count:
            logger.warning("worker stopping (%s): re-queued %d running job(s)", sig, count)
    except Exception:  # noqa: BLE001 - never block a shutdown; the restart recovers the job
        logger.exception("could not re-queue running jobs at shutdown")


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
