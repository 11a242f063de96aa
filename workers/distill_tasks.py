"""Distillation jobs: a thin task over apps.distill.services (see workers/base.py)."""

from apps.distill import kinds, services
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app
from workers.task_helpers import job_project, job_row, limit_threads


def distill(ctx: JobContext) -> dict:
    limit_threads()
    try:
        run = services.run_distillation(
            project=job_project(ctx),
            job=job_row(ctx),
            params=ctx.params,
            progress=ctx.progress,
            log=ctx.log,
            check_cancelled=ctx.check_cancelled,
        )
    except services.DistillError as exc:
        raise JobError(str(exc)) from exc
    return {"run": run.pk, "chosen": run.summary["chosen"], "students": run.summary["students"]}


@app.task(name=f"frugal.{kinds.DISTILL}")
def distill_task(job_id: int) -> None:
    run_job(job_id, distill)
