"""Distillation jobs: a thin task over apps.distill.services (see workers/base.py)."""

from apps.distill import kinds, services
from apps.jobs.models import Job
from apps.projects.models import Project
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app


def distill(ctx: JobContext) -> dict:
    import torch

    torch.set_num_threads(1)  # shared machines: one thread per job
    project = Project.objects.filter(pk=ctx.project_id).first()
    if project is None:
        raise JobError("The project of this job no longer exists.")
    try:
        run = services.run_distillation(
            project=project,
            job=Job.objects.filter(pk=ctx.job_id).first(),
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
