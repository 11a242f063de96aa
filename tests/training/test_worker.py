"""Training jobs on a real Celery worker process over the real broker and database."""

import pytest

from apps.jobs.models import JobStatus
from apps.rules.models import Rule
from apps.training import kinds, services
from apps.training.models import Round, RoundStatus

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.needs_data]


def test_warm_cache_then_a_round_end_to_end_on_a_worker(
    celery_worker_process, youtube_project, admin_user, wait_for_status
):
    warm = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.WARM_CACHE
    )
    wait_for_status(warm, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert warm.status == JobStatus.SUCCEEDED, warm.error + warm.log[-3000:]
    assert warm.result["examples"] == 360

    job = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.RUN_ROUND
    )
    wait_for_status(job, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert job.status == JobStatus.SUCCEEDED, job.error + job.log[-3000:]
    assert job.progress == 1.0
    assert job.worker.startswith(celery_worker_process.nodename)
    rnd = Round.objects.get(project=youtube_project, job=job)
    assert rnd.status == RoundStatus.REVIEW and rnd.number == 1
    assert job.result["round"] == 1
    assert (
        Rule.objects.filter(project=youtube_project, round_number=1).count()
        == (rnd.metrics["suggestions_stored"])
    )
    assert "Round 1 done" in job.log

    final = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.FINALIZE
    )
    wait_for_status(final, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert final.status == JobStatus.SUCCEEDED, final.error + final.log[-3000:]
    assert final.result["version"] == "prboost round 1"
    labeled = youtube_project.examples.filter(label_source="model")
    assert labeled.filter(split="pool", label_version="prboost round 1").count() == 240
    assert labeled.filter(split="test", label_version="prboost round 1").count() == 60
    assert labeled.filter(split="dev", label_version="prboost round 1 (cross-fitted)").count() == 60


def test_a_worker_killed_mid_round_leaves_the_previous_state_and_a_rerun_succeeds(
    celery_worker_factory, youtube_project, admin_user, wait_for_status, settings
):
    import time

    from apps.jobs.services import mark_stale_jobs

    worker = celery_worker_factory()
    first = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.RUN_ROUND
    )
    wait_for_status(first, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert first.status == JobStatus.SUCCEEDED, first.error
    state = services.latest_live_round(project=youtube_project)
    rules = Rule.objects.filter(project=youtube_project).count()

    job = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.RUN_ROUND
    )
    deadline = time.monotonic() + 120
    while not Round.objects.filter(job=job, status=RoundStatus.RUNNING).exists():
        assert time.monotonic() < deadline, "the second round never started"
        time.sleep(0.02)
    worker.kill()  # SIGKILL mid-round, as an out-of-memory kill would
    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    mark_stale_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    services.reconcile_rounds(project=youtube_project)
    assert Round.objects.get(job=job).status == RoundStatus.FAILED
    assert services.latest_live_round(project=youtube_project) == state
    assert Rule.objects.filter(project=youtube_project).count() == rules

    celery_worker_factory()
    rerun = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.RUN_ROUND
    )
    wait_for_status(rerun, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=300)
    assert rerun.status == JobStatus.SUCCEEDED, rerun.error
    assert services.latest_live_round(project=youtube_project).number == 2
