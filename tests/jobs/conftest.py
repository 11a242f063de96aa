"""Fixtures for the job tests: a job row and a way to wait for a job's state."""

import time

import pytest

from apps.jobs.models import Job, JobStatus


@pytest.fixture
def make_job(project, admin_user):
    def make(kind: str = "selftest", params: dict | None = None, **fields) -> Job:
        return Job.objects.create(
            kind=kind,
            project=fields.pop("project", project),
            launched_by=fields.pop("launched_by", admin_user),
            params=params or {},
            **fields,
        )

    return make


def _wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _wait_for_status(job: Job, *statuses: str, timeout: float = 30.0) -> Job:
    def check():
        job.refresh_from_db()
        return job.status in statuses

    _wait_for(check, timeout=timeout, what=f"job {job.pk} to be {'/'.join(statuses)}")
    return job


@pytest.fixture
def sent(monkeypatch):
    """Capture the task messages instead of sending them to the broker."""
    from workers.celery_app import app

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: messages.append({"name": name, **kw}))
    return messages


@pytest.fixture
def wait_for():
    """``wait_for(predicate, timeout=..., what=...)``: poll until truthy, else fail."""
    return _wait_for


@pytest.fixture
def wait_for_status():
    """``wait_for_status(job, *statuses, timeout=...)``: poll the row until it has a status."""
    return _wait_for_status


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
