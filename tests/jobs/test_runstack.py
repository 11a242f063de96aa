"""``manage.py runstack``: web server and worker together, end to end, and stopped together."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
from django.conf import settings

from apps.jobs.models import Job, JobStatus

# A 2-core CI machine at load 10 took over 10 s to answer a stack's first page; the timeout is
# for "never answers", not for slowness.
TIMEOUT_S = 60

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    def __init__(self, proc, port, lines):
        self.proc, self.port, self.lines = proc, port, lines

    def output(self) -> str:
        return "".join(self.lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def children(self):
        import psutil

        return psutil.Process(self.proc.pid).children(recursive=True)


@pytest.fixture
def start_stack(worker_database_url, tmp_path):
    stacks = []
    prefix = f"rs{uuid.uuid4().hex[:8]}-"

    def start(*, broker: str, port: int | None = None) -> Stack:
        port = port or _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url,
            "CELERY_BROKER_URL": broker,
            "FRUGAL_QUEUE_PREFIX": prefix,
            "FRUGAL_VAR_DIR": str(tmp_path / "var"),
            "DB_CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runstack", "--port", str(port), "--web-workers", "1"],
            cwd=str(settings.BASE_DIR),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        stack = Stack(proc, port, lines)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        if stack.proc.poll() is None:
            os.killpg(stack.proc.pid, signal.SIGINT)
            try:
                stack.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.proc.pid, signal.SIGKILL)
    _forget_queues(prefix)


def _forget_queues(prefix: str) -> None:
    """Remove this test's queue bindings from Redis (best effort)."""
    from apps.frugal.broker import redis_answers

    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis") and redis_answers(broker):
        import redis

        client = redis.Redis.from_url(broker, socket_timeout=2)
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)


def _wait_until(predicate, timeout, what, stack):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; runstack said:\n{stack.output()[-4000:]}")


def _wait_ready(stack):
    _wait_until(
        lambda: "Frugal is running at" in stack.output() and " ready." in stack.output(),
        90,
        "the stack to start",
        stack,
    )


@pytest.mark.parametrize("broker", ["filesystem://", "redis"])
def test_runstack_serves_pages_and_runs_a_job_launched_over_http(
    start_stack, broker, project, admin_user
):
    from apps.accounts.authentication import token_digest
    from apps.accounts.models import ApiToken
    from apps.frugal.broker import DEFAULT_REDIS, redis_answers

    if broker == "redis":
        broker = settings.CELERY_BROKER_URL
        if not broker.startswith("redis"):
            broker = DEFAULT_REDIS
        if not redis_answers(broker):
            pytest.skip("no Redis broker answers")
    ApiToken.objects.create(user=admin_user, name="t", prefix="e2e", digest=token_digest("e2e-s"))
    stack = start_stack(broker=broker)
    _wait_ready(stack)
    assert f"http://127.0.0.1:{stack.port}/" in stack.output()
    assert ("embedded filesystem broker" in stack.output()) == broker.startswith("filesystem")
    with urllib.request.urlopen(stack.url("/accounts/login/"), timeout=TIMEOUT_S) as page:
        assert page.status == 200
    with urllib.request.urlopen(stack.url("/static/frugal/frugal.css"), timeout=TIMEOUT_S) as css:
        assert css.status == 200
    launch = urllib.request.Request(
        stack.url(f"/api/v1/projects/{project.pk}/jobs/"),
        data=b'{"kind": "selftest", "params": {"steps": 3, "step_seconds": 0.1}}',
        headers={"Authorization": "Bearer e2e-s", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(launch, timeout=TIMEOUT_S) as response:
        assert response.status == 201
    job = Job.objects.get()
    _wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED).exists(),
        60,
        "the job to succeed on the stack's worker",
        stack,
    )
    os.kill(stack.proc.pid, signal.SIGINT)  # Ctrl-C
    assert stack.proc.wait(timeout=40) == 0, stack.output()[-3000:]
    assert "Stopped the web server and the workers." in stack.output()
    with pytest.raises(OSError):
        urllib.request.urlopen(stack.url("/accounts/login/"), timeout=2)


def test_runstack_restarts_a_killed_worker_and_keeps_serving(start_stack):
    """SIGKILL of a worker's main process: the web server keeps serving, runstack starts the
    worker again (issue 13 item 6)."""
    stack = start_stack(broker="filesystem://")
    _wait_ready(stack)

    def workers():
        return [
            p
            for p in stack.children()
            if "celery" in " ".join(p.cmdline()) and p.ppid() == stack.proc.pid
        ]

    assert len(workers()) == 2  # model jobs, interactive jobs
    assert all(p.nice() >= 10 for p in workers())  # batch work yields to the web server
    victim = next(p for p in workers() if "-interactive@" not in " ".join(p.cmdline()))
    os.kill(victim.pid, signal.SIGKILL)  # the main process only
    _wait_until(
        lambda: "The worker exited unexpectedly" in stack.output(), 20, "the restart", stack
    )
    assert stack.proc.poll() is None
    with urllib.request.urlopen(stack.url("/accounts/login/"), timeout=TIMEOUT_S) as page:
        assert page.status == 200
    _wait_until(
        lambda: len(workers()) == 2 and victim.pid not in [p.pid for p in workers()],
        30,
        "the worker to be started again",
        stack,
    )


def test_runstack_refuses_a_port_in_use_with_a_clear_message(start_stack):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stack = start_stack(broker="filesystem://", port=busy.getsockname()[1])
        assert stack.proc.wait(timeout=60) != 0
    time.sleep(0.2)
    assert "already in use" in stack.output()
