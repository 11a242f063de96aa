"""LoRC jobs: a thin task over apps.lorc.services (see workers/base.py for the job base)."""

from django.core.exceptions import ValidationError

from apps.lorc import kinds, services
from apps.lorc.models import CompressedLM
from workers.base import JobContext, JobError, run_job
from workers.celery_app import app
from workers.task_helpers import job_project, job_row, limit_threads


def calibrate(ctx: JobContext) -> dict:
    limit_threads()
    project = job_project(ctx)
    params = kinds.clean_params(dict(ctx.params or {}))
    done = CompressedLM.objects.filter(job_id=ctx.job_id).first()
    if done is not None:  # a redelivered job that already stored its result
        return {"compressed_lm": done.pk, "saved": done.metrics.get("saved")}
    try:
        compressed = services.calibrate(
            project=project,
            job=job_row(ctx),
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
