"""DORM jobs: thin tasks over apps.alignment.services (see workers/base.py for the job base).

Both write their results at the very end (one transaction / one artifact), so a failed, cancelled
or killed run leaves the previous weights and models as they were.
"""

from apps.alignment import kinds, services
from workers.base import JobContext, run_job
from workers.celery_app import app
from workers.task_helpers import job_project, job_row, limit_threads


def compute_weights(ctx: JobContext) -> dict:
    limit_threads()
    return services.compute_weights(
        project=job_project(ctx),
        job=job_row(ctx),
        params=ctx.params,
        progress=ctx.progress,
        log=ctx.log,
        check_cancelled=ctx.check_cancelled,
    )


def train_reward_model(ctx: JobContext) -> dict:
    limit_threads()
    return services.train_reward_model(
        project=job_project(ctx),
        job=job_row(ctx),
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
