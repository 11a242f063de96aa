"""DORM jobs on a real Celery worker process: a weight run, then a second one SIGKILLed midway,
which leaves the first run's weights exactly as they were."""

import time

import pytest

from apps.alignment import kinds
from apps.alignment.models import PreferencePair, WeightRun
from apps.jobs.models import JobStatus
from apps.jobs.services import launch_job, mark_stale_jobs
from tests.alignment.conftest import make_pairs

pytestmark = [pytest.mark.worker, pytest.mark.slow]

PARAMS = {
    "weights": "free",
    "method": "penalty",
    "stage2": True,
    "reward_model": "head",
    "members": 3,
}


def wait_for(job, *statuses, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job.pk} not {'/'.join(statuses)} after {timeout} s: {job.status}")


def weights(project) -> list:
    return list(
        PreferencePair.objects.filter(project=project)
        .order_by("id")
        .values_list("weight", "stage1_weight", "margin")
    )


def test_a_weight_job_killed_midway_leaves_the_previous_weights(
    celery_worker_factory, pref_project, pref_admin, settings
):
    make_pairs(pref_project, pool=60, dev=20, test=0, flip_every=5)
    worker = celery_worker_factory()
    first = launch_job(
        kind=kinds.COMPUTE_WEIGHTS, project=pref_project, user=pref_admin, params=PARAMS
    )
    wait_for(first, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert first.status == JobStatus.SUCCEEDED, first.error + first.log[-3000:]
    assert first.result["n_train"] == 60
    before = weights(pref_project)
    assert all(w is not None for w, _, _ in before[:60])

    second = launch_job(
        kind=kinds.COMPUTE_WEIGHTS, project=pref_project, user=pref_admin, params=PARAMS
    )
    deadline = time.monotonic() + 300
    while True:  # well into the run: stage 1 done, refining
        second.refresh_from_db()
        if second.progress >= 0.55:
            break
        assert second.status in (JobStatus.QUEUED, JobStatus.RUNNING), second.error
        assert time.monotonic() < deadline, "the second run never got to stage 2"
        time.sleep(0.05)
    worker.kill()  # SIGKILL, as an out-of-memory kill would
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    mark_stale_jobs()
    second.refresh_from_db()
    assert second.status == JobStatus.FAILED
    assert weights(pref_project) == before
    assert WeightRun.objects.filter(project=pref_project).count() == 1
