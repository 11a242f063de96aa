"""PRBoost jobs: thin tasks over apps.training.services (see workers/base.py for the job base)."""

from apps.training import kinds, services
from workers.base import JobContext, run_job
from workers.celery_app import app
from workers.task_helpers import job_project, job_row, limit_threads


def warm_cache(ctx: JobContext) -> dict:
    limit_threads()
    return services.warm_cache(project=job_project(ctx), progress=ctx.progress, log=ctx.log)


def run_round(ctx: JobContext) -> dict:
    limit_threads()
    rnd = services.run_round(
        project=job_project(ctx), job=job_row(ctx), progress=ctx.progress, log=ctx.log
    )
    return {"round": rnd.number, "alpha": rnd.alpha, "metrics": rnd.metrics}


def refresh_labels(ctx: JobContext) -> dict:
    limit_threads()
    return services.refresh_labels(
        project=job_project(ctx),
        overwrite_model_labels=bool(ctx.params.get("overwrite_model_labels", False)),
        progress=ctx.progress,
        log=ctx.log,
    )


def finalize(ctx: JobContext) -> dict:
    limit_threads()
    label_set = services.finalize(
        project=job_project(ctx), job=job_row(ctx), progress=ctx.progress, log=ctx.log
    )
    return {"version": label_set.version, "labeled": label_set.n_labeled, **label_set.metrics}


@app.task(name=f"frugal.{kinds.WARM_CACHE}")
def warm_cache_task(job_id: int) -> None:
    run_job(job_id, warm_cache)


@app.task(name=f"frugal.{kinds.RUN_ROUND}")
def run_round_task(job_id: int) -> None:
    run_job(job_id, run_round)


@app.task(name=f"frugal.{kinds.REFRESH_LABELS}")
def refresh_labels_task(job_id: int) -> None:
    run_job(job_id, refresh_labels)


@app.task(name=f"frugal.{kinds.FINALIZE}")
def finalize_task(job_id: int) -> None:
    run_job(job_id, finalize)
