"""Celery worker pool on this machine: --pool=solo vs prefork -c 1 (startup, memory, latency)."""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

POOLS = {
    "solo": ["--pool", "solo"],
    "prefork-1": ["--pool", "prefork", "--concurrency", "1", "-O", "fair"],
}


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_full_info().pss for p in procs) / 2**20  # PSS: shared pages once
    except psutil.Error:
        return float("nan")


def _run_pool(name: str, pool_args: list[str], jobs: int, steps: int) -> dict:
    from django.conf import settings

    from apps.jobs.management.commands.runstack import THREAD_LIMITS, worker_command
    from apps.jobs.models import Job
    from apps.jobs.services import launch_job

    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings.FRUGAL_QUEUE_PREFIX = prefix
    env = {**os.environ, **THREAD_LIMITS, "FRUGAL_QUEUE_PREFIX": prefix}
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    cmd = worker_command(nodename=f"{prefix}w@%h", loglevel="INFO", pool_args=pool_args)
    started = time.monotonic()
    proc = subprocess.Popen(
        [*cmd, "--without-heartbeat"],
        env=env,
        cwd=str(settings.BASE_DIR),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            if " ready." in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        proc.kill()
        raise RuntimeError(f"{name}: the worker did not start")
    startup_s = time.monotonic() - started
    time.sleep(1.0)
    idle_mb = _tree_rss_mb(proc.pid)
    t0 = time.monotonic()
    ids = [
        launch_job(
            kind="selftest",
            project=None,
            user=None,
            params={"steps": steps, "step_seconds": 0.0},
        ).pk
        for _ in range(jobs)
    ]
    peak_mb = idle_mb
    while Job.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
        peak_mb = max(peak_mb, _tree_rss_mb(proc.pid))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    done = list(Job.objects.filter(pk__in=ids))
    waits = [(j.started_at - j.created_at).total_seconds() for j in done if j.started_at]
    runs = [(j.finished_at - j.started_at).total_seconds() for j in done if j.started_at]
    statuses = {j.status for j in done}
    Job.objects.filter(pk__in=ids).delete()
    proc.terminate()
    proc.wait(timeout=30)
    if settings.CELERY_BROKER_URL.startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
    return {
        "pool": name,
        "startup_s": startup_s,
        "idle_mb": idle_mb,
        "peak_mb": peak_mb,
        "jobs_per_s": jobs / wall,
        "wait_p50_ms": statistics.median(waits) * 1000,
        "run_p50_ms": statistics.median(runs) * 1000,
        "statuses": ",".join(sorted(statuses)),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench jobs_pool", description=__doc__)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pools", default=",".join(POOLS))
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.frugal.settings")
    import django

    django.setup()
    from django.conf import settings

    print(f"broker {settings.CELERY_BROKER_URL}, database {settings.DATABASES['default']['NAME']}")
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, {args.jobs} selftest jobs")
    rows = [_run_pool(p, POOLS[p], args.jobs, args.steps) for p in args.pools.split(",")]
    header = f"{'pool':<10} {'start s':>8} {'idle PSS':>8} {'peak PSS':>8} {'jobs/s':>7} "
    header += f"{'wait p50 ms':>11} {'run p50 ms':>10}  statuses"
    print(header)
    for r in rows:
        print(
            f"{r['pool']:<10} {r['startup_s']:>8.1f} {r['idle_mb']:>8.0f} {r['peak_mb']:>8.0f} "
            f"{r['jobs_per_s']:>7.1f} {r['wait_p50_ms']:>11.0f} {r['run_p50_ms']:>10.0f}  "
            f"{r['statuses']}"
        )
    return 0
