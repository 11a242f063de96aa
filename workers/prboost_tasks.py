"""PRBoost jobs: thin tasks over apps.training.services (see workers/base.py for the job base)."""

from apps.projects.models import Project
from apps.training import kinds, services
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app


def _limit_threads() -> None:
    """One BLAS/torch thread per job: the machines these run on are shared."""
    import torch

    torch.set_num_threads(1)


def _project(ctx: JobContext) -> Project:
    project = Project.objects.filter(pk=ctx.project_id).first()
    if project is None:
        raise JobError("The project of this job no longer exists.")
    return project


def _job(ctx: JobContext):
    from apps.jobs.models import Job

    return Job.objects.filter(pk=ctx.job_id).first()


def warm_cache(ctx: JobContext) -> dict:
    _limit_threads()
    return services.warm_cache(project=_project(ctx), progress=ctx.progress, log=ctx.log)


def run_round(ctx: JobContext) -> dict:
    _limit_threads()
    rnd = services.run_round(
        project=_project(ctx), job=_job(ctx), progress=ctx.progress, log=ctx.log
    )
    return {"round": rnd.number, "alpha": rnd.alpha, "metrics": rnd.metrics}


def refresh_labels(ctx: JobContext) -> dict:
    _limit_threads()
    return services.refresh_labels(
        project=_project(ctx),
        overwrite_model_labels=bool(ctx.params.get("overwrite_model_labels", False)),
        progress=ctx.progress,
        log=ctx.log,
    )


def finalize(ctx: JobContext) -> dict:
    _limit_threads()
    label_set = services.finalize(
        project=_project(ctx), job=_job(ctx), progress=ctx.progress, log=ctx.log
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
