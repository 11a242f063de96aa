"""Generic job tasks (see workers/base.py for the task base every kind uses)."""

import os
import time

from workers.base import JobContext, JobError, run_job, worker_identity
from workers.celery_app import app


def selftest(ctx: JobContext) -> dict:
    """Timed steps with progress and log lines; honours cancel within ~0.1 s of a step's sleep.

    Params (validated at launch by ``apps.jobs.kinds.clean_selftest_params``): ``steps``,
    ``step_seconds``, ``fail_at_step`` (raise a user-facing error at that step).
    """
    steps = int(ctx.params.get("steps", 5))
    step_seconds = float(ctx.params.get("step_seconds", 0.5))
    fail_at = ctx.params.get("fail_at_step")
    started = time.monotonic()
    for step in range(1, steps + 1):
        ctx.progress((step - 1) / steps, f"Step {step} of {steps}")
        if fail_at is not None and step == int(fail_at):
            raise JobError(f"Self-test failure requested at step {step} of {steps}.")
        deadline = time.monotonic() + step_seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            ctx.check_cancelled()
        ctx.log(f"Step {step} of {steps} done.")
    ctx.progress(1.0, f"All {steps} steps done")
    return {
        "steps": steps,
        "seconds": round(time.monotonic() - started, 3),
        "worker": worker_identity(),
        "pid": os.getpid(),
    }


@app.task(name="frugal.selftest")
def selftest_task(job_id: int) -> None:
    run_job(job_id, selftest)
