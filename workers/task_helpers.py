"""What the model tasks share: one torch/BLAS thread per job, and the job's project and row."""

from apps.jobs.models import Job
from apps.projects.models import Project
from workers.base import JobContext, JobError


def limit_threads() -> None:
    """One BLAS/torch thread per job: the machines these run on are shared."""
    import torch

    torch.set_num_threads(1)


def job_project(ctx: JobContext) -> Project:
    """The job's project; a clear error when it was deleted meanwhile."""
    project = Project.objects.filter(pk=ctx.project_id).first()
    if project is None:
        raise JobError("The project of this job no longer exists.")
    return project


def job_row(ctx: JobContext) -> Job | None:
    return Job.objects.filter(pk=ctx.job_id).first()
