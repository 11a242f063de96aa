"""DORM jobs: thin tasks over apps.alignment.services (see workers/base.py for the job base).

Both write their results at the very end (one transaction / one artifact), so a failed, cancelled
or killed run leaves the previous weights and models as they were.
"""

from apps.alignment import kinds, services
from apps.projects.models import Project
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app


def _project(ctx: JobContext) -> Project:
    project = Project.objects.filter(pk=ctx.project_id).first()
    if project is None:
        raise JobError("The project of this job no longer exists.")
    return project


def _job(ctx: JobContext):
    from apps.jobs.models import Job

    return Job.objects.filter(pk=ctx.job_id).first()


def compute_weights(ctx: JobContext) -> dict:
    return services.compute_weights(
        project=_project(ctx),
        job=_job(ctx),
        params=ctx.params,
        progress=ctx.progress,
        log=ctx.log,
        check_cancelled=ctx.check_cancelled,
    )


def train_reward_model(ctx: JobContext) -> dict:
    return services.train_reward_model(
        project=_project(ctx),
        job=_job(ctx),
        params=ctx.params,
        progress=ctx.progress,
        log=ctx.log,
        check_cancelled=ctx.check_cancelled,
    )


@app.task(name=f"frugal.{kinds.COMPUTE_WEIGHTS}")
def compute_weights_task(job_id: int) -> None:
    run_job(job_id, compute_weights)


@app.task(name=f"frugal.{kinds.TRAIN_REWARD_MODEL}")
def train_reward_model_task(job_id: int) -> None:
    run_job(job_id, train_reward_model)
