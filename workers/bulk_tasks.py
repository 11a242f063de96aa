"""Bulk actions too big for a request (``apps.bulk.services``): apply one, or undo one, as a job.

The work runs in one database transaction (all or nothing); progress reaches the job through
the import's relay thread (its own connection), since the job row must not be written from
inside that transaction, and a cancel seen there rolls everything back.
"""

from django.core.exceptions import PermissionDenied, ValidationError

from apps.bulk import services
from apps.bulk.models import BulkAction
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app
from workers.dataset_tasks import ProgressRelay
from workers.task_helpers import job_project, job_row


@app.task(name=f"frugal.{services.APPLY_JOB_KIND}")
def bulk_apply(job_id: int) -> None:
    run_job(job_id, handle_bulk_apply)


@app.task(name=f"frugal.{services.UNDO_JOB_KIND}")
def bulk_undo(job_id: int) -> None:
    run_job(job_id, handle_bulk_undo)


def _refused(exc: Exception) -> JobError:
    return JobError(" ".join(getattr(exc, "messages", None) or [str(exc)]) + " Nothing changed.")


def handle_bulk_apply(ctx: JobContext) -> dict:
    project = job_project(ctx)
    job = job_row(ctx)
    user = job.launched_by if job is not None else None
    ctx.log("Checking the selection again before changing anything.")
    try:
        with ProgressRelay(ctx) as relay:
            action = services.run_bulk_job(
                project=project,
                user=user,
                params=ctx.params,
                job=job,
                progress=relay.report,
                before_commit=ctx.commit_point,
            )
    except (PermissionDenied, ValidationError) as exc:
        raise _refused(exc) from None
    plan_words = (
        f"set the gold label {services.label_name(project, int(action.value))}"
        if action.kind == "label"
        else f"moved to {action.value}"
    )
    summary = f"Done: {plan_words} on {action.count:,} examples (undo it from the bulk history)."
    ctx.log(summary)
    return {"bulk_action": action.pk, "count": action.count, "summary": summary}


def handle_bulk_undo(ctx: JobContext) -> dict:
    project = job_project(ctx)
    job = job_row(ctx)
    user = job.launched_by if job is not None else None
    action = BulkAction.objects.filter(project=project, pk=ctx.params.get("action")).first()
    if action is None:
        raise JobError("That bulk action no longer exists. Nothing changed.")
    try:
        with ProgressRelay(ctx) as relay:
            restored = services.undo_bulk(
                action=action, user=user, progress=relay.report, before_commit=ctx.commit_point
            )
    except (PermissionDenied, ValidationError) as exc:
        raise _refused(exc) from None
    kept = action.count - restored
    summary = f"Undone: {restored:,} examples restored." + (
        f" {kept:,} were changed since and kept their newer values." if kept else ""
    )
    ctx.log(summary)
    return {"bulk_action": action.pk, "restored": restored, "summary": summary}
