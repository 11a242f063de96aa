"""Dataset tasks: the import (a thin shell around the import pipeline) and the search
indexing job an import launches when it commits.

On PostgreSQL the import runs in one database transaction (all or nothing). Progress must not
be written from inside it — the job row would stay locked until the commit, and the job's
heartbeat thread would wait on that lock — so a relay thread, with its own connection, forwards
progress to the job and brings back a cancel request, which rolls the import back. (On SQLite
the rows are staged outside the main database and committed at the end; the relay is the same.)
"""

import logging
import threading
import time

from django.db import InterfaceError, OperationalError, connection

from apps.datasets import search_index
from apps.datasets.import_services import remove_staged, resolve_server_path, staged_path
from apps.datasets.pipeline import ImportFailed, ImportOptions, import_examples
from apps.jobs.models import Job
from apps.projects.models import Project
from workers.base import JobCancelled, JobContext, JobError, JobLost, run_job
from workers.celery_app import app

logger = logging.getLogger("frugal.jobs")


@app.task(name="frugal.import_dataset")
def import_dataset(job_id: int) -> None:
    run_job(job_id, handle_import)


@app.task(name=f"frugal.{search_index.INDEX_JOB_KIND}")
def index_search(job_id: int) -> None:
    run_job(job_id, handle_index_search)


def handle_index_search(ctx: JobContext) -> dict:
    """Fill the search vectors of the project's unindexed examples, batch by batch (each batch
    commits on its own, so a cancel keeps what was done and a rerun goes on from there)."""
    if ctx.project_id is None:
        raise JobError("The search indexing job needs a project.")
    ctx.log("Indexing the project's new examples for full-text search.")
    started = time.monotonic()
    indexed = search_index.index_project(project_id=ctx.project_id, progress=ctx.progress)
    if indexed:
        search_index.refresh_statistics()
    seconds = time.monotonic() - started
    ctx.log(f"Indexed {indexed:,} examples in {seconds:.1f} s.")
    return {"indexed": indexed, "seconds": round(seconds, 3)}


class ProgressRelay:
    """Forwards the latest progress to ``ctx.progress`` from its own thread (and connection)."""

    def __init__(self, ctx: JobContext, interval: float = 0.5):
        self.ctx = ctx
        self.interval = interval
        self._latest: tuple[float, str] | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._stop_error: JobCancelled | None = None
        self._thread = threading.Thread(target=self._run, name="import-progress", daemon=True)

    def report(self, fraction: float, message: str) -> None:
        """Called by the pipeline; raises JobCancelled once a cancel was seen."""
        if self._stop_error is not None:
            raise self._stop_error
        self._latest = (fraction, message)
        self._wake.set()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                latest, self._latest = self._latest, None
                if latest is not None and self._stop_error is None:
                    try:
                        self.ctx.progress(*latest)
                    except JobCancelled as exc:
                        self._stop_error = exc
                    except Exception:  # a failed write must not stop the import; retry later
                        logger.exception("job %s: progress write failed", self.ctx.job_id)
                if self._halt.is_set():
                    return
        finally:
            connection.close()

    def __enter__(self) -> "ProgressRelay":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._halt.set()
        self._wake.set()
        self._thread.join(timeout=60)


def handle_import(ctx: JobContext) -> dict:
    params = ctx.params
    staged = staged_path(params["path"]) if params.get("source") == "upload" else None
    retrying = False
    try:
        project = Project.objects.get(pk=ctx.project_id)
        options = ImportOptions.from_params(params)
        if staged is None:
            try:
                path = resolve_server_path(params["path"])
            except Exception as exc:
                raise JobError(" ".join(getattr(exc, "messages", [str(exc)]))) from None
        else:
            path = staged
        ctx.log(f"Importing {options.display_name or path.name} ({options.format}).")
        try:
            with ProgressRelay(ctx) as relay:
                summary = import_examples(
                    project=project,
                    path=path,
                    options=options,
                    progress=relay.report,
                    before_commit=ctx.commit_point,
                )
        except ImportFailed as exc:
            for problem in exc.problems:
                ctx.log(f"Problem: {problem}")
            # The failed job keeps the problems as data for the pages (run_job keeps result).
            Job.objects.filter(pk=ctx.job_id).update(result=exc.to_dict())
            raise JobError(one_line(exc)) from None
    except (OperationalError, InterfaceError, JobLost):
        # run_job re-queues the job (a database error), or it was re-queued already (a
        # graceful stop): the next run needs the upload.
        retrying = True
        raise
    finally:
        if staged is not None and not retrying:
            remove_staged(staged)
    splits = ", ".join(f"{n:,} {split}" for split, n in summary["splits"].items() if n)
    ctx.log(f"Imported {summary['rows']:,} examples ({splits}) in {summary['seconds']:.1f} s.")
    if summary["labels_added"]:
        ctx.log(f"Labels taken from the data: {', '.join(summary['labels_added'])}.")
    if summary.get("search_index_job"):
        ctx.log(f"Indexing for full-text search goes on in job #{summary['search_index_job']}.")
    return summary


def one_line(exc: ImportFailed) -> str:
    """The job's error: the problems numbered on one line (the job page shows ``result``)."""
    count = len(exc.problems)
    head = f"Import failed, nothing was imported: {count} problem{'s' if count != 1 else ''}"
    if exc.truncated:
        head += f" (stopped after the first {count})"
    items = "; ".join(f"({i}) {p}" for i, p in enumerate(exc.problems, start=1))
    return f"{head}: {items}"
