"""The job lifecycle, importable from here as before: it lives in :mod:`apps.jobs.runner`.

Task modules write ``from workers.base import JobContext, JobError, run_job``; these are the same
objects as ``apps.jobs.runner``'s (patch settings there, not here).
"""

from apps.jobs.runner import (
    JobCancelled,
    JobContext,
    JobError,
    JobLost,
    fail_job,
    max_attempts,
    run_job,
    to_json,
    user_error,
    worker_identity,
)

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobLost",
    "fail_job",
    "max_attempts",
    "run_job",
    "to_json",
    "user_error",
    "worker_identity",
]
