"""Shared fixtures: users in roles, a project, and the shared data folder."""

from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are created in most tests; the real hasher costs ~0.2 s per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Each test gets an empty in-process cache, never another run's claims in Redis."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "frugal-tests",
        }
    }
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def data_dir() -> Path:
    """The shared corpora folder; tests that need it skip with a reason when it is absent."""
    path = Path(settings.FRUGAL_DATA_DIR)
    if not (path / "wrench-youtube").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set FRUGAL_DATA_DIR)")
    return path


@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str, password: str = "pw-for-tests-123", **extra):
        return django_user_model.objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def project(db, make_user):
    from apps.projects.models import Membership, Project, Role

    owner = make_user("owner")
    project = Project.objects.create(
        name="Spam", task_type="text_classification", labels=["HAM", "SPAM"], created_by=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.ADMIN)
    return project


@pytest.fixture
def admin_user(project):
    return project.memberships.get(role="admin").user


@pytest.fixture
def annotator(project, make_user):
    from apps.projects.models import Membership, Role

    user = make_user("annie")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db, make_user):
    """A logged-in user who is a member of no project."""
    return make_user("mallory")


# --- A real Celery worker process (jobs) -----------------------------------------------------


class CeleryWorkerProcess:
    """A ``celery -A workers worker`` subprocess on the test database and its own queues."""

    def __init__(self, *, proc, prefix: str, nodename: str, lines: list[str]):
        self.proc = proc
        self.prefix = prefix
        self.nodename = nodename
        self.lines = lines

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash or OOM kill would."""
        import contextlib
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        import os
        import signal
        import subprocess

        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # cold shutdown: tests need no grace
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def _worker_database_url(settings_dict) -> str | None:
    """A DATABASE_URL naming pytest-django's test database, or None if another process cannot
    open it (SQLite in memory)."""
    from urllib.parse import quote

    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or "mode=memory" in str(name):
            return None
        return f"sqlite:///{name}"
    if "postgresql" in engine:
        user = quote(settings_dict.get("USER") or "", safe="")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{quote(name, safe='')}"
    return None


def _cleanup_redis_queues(broker_url: str, prefix: str) -> None:
    """Remove this run's queues, bindings and unacked messages from Redis (best effort)."""
    try:
        import redis

        client = redis.Redis.from_url(broker_url, socket_timeout=2)
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
        for tag, payload in (client.hgetall("unacked") or {}).items():
            if prefix.encode() in payload:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    except Exception as exc:  # noqa: BLE001 - cleanup must never fail a test
        print(f"could not clean up the test queues in Redis: {exc}")


@pytest.fixture
def worker_database_url(transactional_db):
    """DATABASE_URL of pytest-django's test database for a subprocess (worker, web server);
    skips when another process cannot open it (SQLite in memory)."""
    from django.db import connection

    url = _worker_database_url(connection.settings_dict)
    if url is None:
        pytest.skip(
            "a worker process cannot open an in-memory SQLite test database "
            "(run with DATABASE_URL=postgres://... or a file SQLite test database)"
        )
    return url


@pytest.fixture
def celery_pool():
    """The pool of the worker ``celery_worker_process`` starts; None = what runstack uses.
    Override per test with ``@pytest.mark.parametrize("celery_pool", ["solo"])``."""
    return None


@pytest.fixture
def celery_worker_factory(worker_database_url, settings, celery_pool):
    """``start(nodename=None) -> CeleryWorkerProcess``: start real Celery workers on the test
    database (several, or one again under the same node name, as after a restart).

    Tests using it need committed data, hence ``transactional_db``. Workers consume queues under
    a unique FRUGAL_QUEUE_PREFIX (set for the test process too), so parallel runs on one Redis
    never take each other's tasks. Skips when the database is SQLite in memory or the broker
    does not answer. Every worker is stopped at teardown.
    """
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time
    import uuid

    from apps.frugal.broker import redis_answers
    from apps.jobs.management.commands.runstack import WORKER_POOL_ARGS

    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis") and not redis_answers(broker):
        pytest.skip(f"the Celery broker at {broker} does not answer")
    if not broker.startswith(("redis", "filesystem")):
        pytest.skip(f"the real-worker tests need Redis or the filesystem broker, not {broker}")
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings.FRUGAL_QUEUE_PREFIX = prefix
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url,
        "CELERY_BROKER_URL": broker,
        "FRUGAL_QUEUE_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "apps.frugal.settings",
        "DB_CONN_MAX_AGE": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    pool_args = ["--pool", celery_pool, "--concurrency", "1"] if celery_pool else WORKER_POOL_ARGS
    started: list[CeleryWorkerProcess] = []

    def start(
        *, nodename: str | None = None, queues: tuple[str, ...] = ("cpu", "gpu", "interactive")
    ) -> CeleryWorkerProcess:
        nodename = nodename or f"{prefix}w{len(started)}@{socket.gethostname()}"
        cmd = [
            *(sys.executable, "-m", "celery", "-A", "workers", "worker"),
            *("-Q", ",".join(prefix + q for q in queues), *pool_args, "-n", nodename),
            *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"),
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=str(settings.BASE_DIR),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: list[str] = []
        ready = threading.Event()

        def pump():
            for line in proc.stdout:
                lines.append(line)
                if " ready." in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        worker = CeleryWorkerProcess(proc=proc, prefix=prefix, nodename=nodename, lines=lines)
        started.append(worker)
        deadline = time.monotonic() + 90
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                pytest.fail("the Celery worker did not start:\n" + worker.output()[-5000:])
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        if broker.startswith("redis"):
            _cleanup_redis_queues(broker, prefix)


@pytest.fixture
def celery_worker_process(celery_worker_factory):
    """One real Celery worker on the test database (see ``celery_worker_factory``)."""
    return celery_worker_factory()
