"""The periodic repair pass: jobs whose worker stopped answering, rounds whose job is over.

Pages only read; this pass writes. Every worker runs it every ``FRUGAL_MAINTENANCE_INTERVAL_S``
seconds from a thread of its main process (started in workers/celery_app.py when the worker is
ready), so it runs while the pool is busy with a long job; the ``frugal.maintenance`` task is
the same pass for deployments that schedule it with Celery beat. Each repair is a conditional
update, so workers running it at once do no harm.
"""

import logging
import threading

from django.conf import settings
from django.db import connection

from apps.jobs.services import mark_stale_jobs
from apps.training.maintenance import reconcile_all_rounds
from workers.celery_app import app

logger = logging.getLogger("frugal.jobs")


def run_maintenance() -> dict[str, int]:
    """One pass: fail stale jobs, then close the rounds their jobs left running."""
    return {"stale_jobs": mark_stale_jobs(), "rounds": reconcile_all_rounds()}


@app.task(name="frugal.maintenance")
def maintenance_task() -> dict[str, int]:
    return run_maintenance()


class MaintenanceTimer(threading.Thread):
    """Runs :func:`run_maintenance` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float | None = None):
        super().__init__(name="frugal-maintenance", daemon=True)
        self.interval = float(interval or settings.FRUGAL_MAINTENANCE_INTERVAL_S)
        self.passes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                run_maintenance()
            except Exception:  # noqa: BLE001 - e.g. the database is down: the next pass retries
                logger.exception("the maintenance pass failed")
            finally:
                # This thread's own connection, closed after each pass: the pool forks new
                # children from this process, and they must not inherit an open one.
                connection.close()
            self.passes += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
