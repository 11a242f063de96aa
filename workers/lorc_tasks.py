"""LoRC jobs: a thin task over apps.lorc.services (see workers/base.py for the job base)."""

from django.core.exceptions import ValidationError

from apps.jobs.models import Job
from apps.lorc import kinds, services
from apps.lorc.models import CompressedLM
from apps.projects.models import Project
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app


def calibrate(ctx: JobContext) -> dict:
    import torch

    torch.set_num_threads(1)  # the machines these run on are shared
    project = Project.objects.filter(pk=ctx.project_id).first()
    if project is None:
        raise JobError("The project of this job no longer exists.")
    params = kinds.clean_params(dict(ctx.params or {}))
    done = CompressedLM.objects.filter(job_id=ctx.job_id).first()
    if done is not None:  # a redelivered job that already stored its result
        return {"compressed_lm": done.pk, "saved": done.metrics.get("saved")}
    try:
        compressed = services.calibrate(
            project=project,
            job=Job.objects.filter(pk=ctx.job_id).first(),
            bits=params["bits"],
            ceiling=params["ceiling"],
            progress=ctx.progress,
            log=ctx.log,
        )
    except ValidationError as exc:
        raise JobError(" ".join(exc.messages)) from exc
    m = compressed.metrics
    return {
        "compressed_lm": compressed.pk,
        "saved": m["saved"],
        "ppl_increase": m["ppl_increase"],
        "top1": m["top1"],
    }


@app.task(name=f"frugal.{kinds.CALIBRATE}")
def calibrate_task(job_id: int) -> None:
    run_job(job_id, calibrate)
