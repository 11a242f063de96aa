"""Jobs never wait behind each other (issue 14 item 1): interactive kinds have their own queue
and worker process; an import launched during a long model job starts within 5 s."""

import time

import pytest

from apps.jobs.kinds import queue_for_kind, resource_for_kind
from apps.jobs.models import JobStatus
from apps.jobs.services import launch_job


def test_interactive_kinds_route_to_their_own_queue_and_overrides_still_win(settings):
    for kind in ("import_dataset", "index_search", "prboost_refresh_labels"):
        assert resource_for_kind(kind) == "interactive"
        assert queue_for_kind(kind) == "interactive"
    assert queue_for_kind("selftest") == "cpu"
    assert queue_for_kind("train_prboost_round") == "cpu"
    settings.FRUGAL_JOB_QUEUES = {"import_dataset": "cpu"}
    assert queue_for_kind("import_dataset") == "cpu"


def test_runstack_starts_a_worker_for_the_interactive_queue(settings):
    from apps.jobs.management.commands.runstack import WORKERS, worker_command

    queues = {q for qs, _ in WORKERS.values() for q in qs}
    assert queues == {"cpu", "gpu", "interactive"}
    settings.FRUGAL_QUEUE_PREFIX = "p-"
    command = worker_command(nodename="n@h", queues=("interactive",))
    assert command[command.index("-Q") + 1] == "p-interactive"


@pytest.mark.worker
@pytest.mark.slow
def test_an_import_launched_during_a_long_cpu_job_starts_within_five_seconds(
    celery_worker_factory, project, admin_user, wait_for_status, tmp_path
):
    from tests.datasets.test_import_worker import big_jsonl, staged_params

    celery_worker_factory(queues=("cpu", "gpu"))
    celery_worker_factory(queues=("interactive",))
    long = launch_job(
        kind="selftest", project=project, user=admin_user, params={"steps": 60, "step_seconds": 1}
    )
    wait_for_status(long, JobStatus.RUNNING, timeout=60)
    path = tmp_path / "small.jsonl"
    big_jsonl(path, 5)
    launched = time.monotonic()
    job = launch_job(
        kind="import_dataset", project=project, user=admin_user, params=staged_params(path)
    )
    assert job.queue == "interactive"
    wait_for_status(job, JobStatus.RUNNING, JobStatus.SUCCEEDED, timeout=30)
    assert time.monotonic() - launched < 5.0
    wait_for_status(job, JobStatus.SUCCEEDED, timeout=60)
    long.refresh_from_db()
    assert long.status == JobStatus.RUNNING  # the model job was never in the way
