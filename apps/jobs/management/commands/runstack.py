"""``python manage.py runstack``: the web server and the job workers, supervised together.

Decides the Celery broker for this checkout (apps/frugal/broker.py: recorded in
``var/broker_url``), then starts gunicorn (serving ``apps.frugal.wsgi`` with whitenoise for static
files) and two Celery workers: one consuming the ``cpu`` and ``gpu`` queues (model jobs), one the
``interactive`` queue (imports, index builds, label refresh: short jobs a person waits for, so
they never wait behind a warm-up; apps/jobs/kinds.py). Each worker also runs the periodic
maintenance pass (workers/maintenance_tasks.py).

Supervision: a worker that dies (killed, crashed) is restarted while the web server keeps
serving; its jobs are re-queued by the new process (``recover_jobs_of_node``). Only the web
server dying stops the stack. Ctrl-C (SIGINT/SIGTERM) stops everything gracefully: each worker's
main process gets SIGTERM (never its pool child, which would die mid-job), re-queues the job it
runs (workers/celery_app.py) and exits; the job runs again at the next start.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.frugal.broker import choose_broker
from apps.jobs.services import broker_display

# One job at a time per worker, in a pool child process: on 2 cores a prefork pool of 1 costs
# about the same as --pool=solo while running (see bench/jobs_pool.py), and buys what solo
# cannot: a job that crashes or is OOM-killed takes only its child with it (the job is failed at
# once, the worker lives on), the parent keeps answering revoke/ping during long jobs, and each
# child is replaced after a few jobs so memory from big models is given back. -O fair: a child
# only gets a task when it is free, so a long job never holds a second one back.
WORKER_POOL_ARGS = [
    "--pool",
    "prefork",
    "--concurrency",
    "1",
    "-O",
    "fair",
    "--max-tasks-per-child",
    "20",
]

# Libraries start one thread per core by default; on a small shared machine the worker must not
# fight the web server for them. Set these in the environment to override.
THREAD_LIMITS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

STOP_GRACE_S = 10


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if runstack itself is killed (no orphaned servers)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# Workers run at a lower CPU priority than the web server, so batch work on a small machine
# takes the cores people's requests leave (environment FRUGAL_WORKER_NICE, 0 turns it off).
WORKER_NICE = int(os.environ.get("FRUGAL_WORKER_NICE", "10"))


def _worker_preexec() -> None:
    _die_with_parent()
    if WORKER_NICE > 0:
        with contextlib.suppress(OSError):
            os.nice(WORKER_NICE)


def worker_command(
    *,
    nodename: str,
    loglevel: str = "INFO",
    pool_args: list[str] | None = None,
    queues: tuple[str, ...] = ("cpu", "gpu"),
) -> list[str]:
    prefix = settings.FRUGAL_QUEUE_PREFIX
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-Q",
        ",".join(f"{prefix}{queue}" for queue in queues),
        *(WORKER_POOL_ARGS if pool_args is None else pool_args),
        "-n",
        nodename,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]


# name -> (queues, node name prefix): the workers runstack starts.
# name -> (queues, suffix of the node name); the node name is settings.FRUGAL_WORKER_NAME
# (per installation) with the suffix before the "@".
WORKERS = {
    "worker": (("cpu", "gpu"), ""),
    "interactive worker": (("interactive",), "-interactive"),
}
# A worker that dies is restarted at once, then after 1, 2, 4 ... s (at most 30) while it keeps
# dying within RESTART_RESET_S of its start.
RESTART_RESET_S = 60.0
RESTART_MAX_DELAY_S = 30.0


def web_command(*, host: str, port: int, workers: int, threads: int) -> list[str]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "apps.frugal.wsgi:application",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "--graceful-timeout",
        str(STOP_GRACE_S),
        "--access-logfile",
        "-",
    ]


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _answers(host: str, port: int) -> bool:
    target = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)  # noqa: S104
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Run the web server (gunicorn) and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--web-threads", type=int, default=4)
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, host, port, web_workers, web_threads, loglevel, **options):
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535 (got {port}).")
        if not _port_free(host, port):
            raise CommandError(
                f"Port {port} on {host} is already in use; stop what runs there or pass --port."
            )
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.frugal.settings"}
        for name, value in THREAD_LIMITS.items():
            env.setdefault(name, value)
        # The broker is decided here, once (apps/frugal/broker.py): recorded in var/broker_url
        # for any process of this checkout started later, and passed to both children.
        broker = choose_broker(settings.VAR_DIR)
        env["CELERY_BROKER_URL"] = broker
        base, _, host_name = settings.FRUGAL_WORKER_NAME.partition("@")
        host_name = host_name or socket.gethostname()
        nodes = {name: f"{base}{suffix}@{host_name}" for name, (_, suffix) in WORKERS.items()}
        children: dict[str, subprocess.Popen] = {}
        started_at: dict[str, float] = {}
        restarts: dict[str, int] = {}
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        def start_worker(name: str) -> None:
            queues, _ = WORKERS[name]
            children[name] = subprocess.Popen(
                worker_command(nodename=nodes[name], loglevel=loglevel, queues=queues),
                env=env,
                cwd=str(settings.BASE_DIR),
                start_new_session=True,
                preexec_fn=_worker_preexec,  # noqa: PLW1509 - runs before exec, no threads yet
            )
            started_at[name] = time.monotonic()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        died = None
        try:
            for name in WORKERS:
                start_worker(name)
            children["web server"] = subprocess.Popen(
                web_command(host=host, port=port, workers=web_workers, threads=web_threads),
                env=env,
                cwd=str(settings.BASE_DIR),
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
            announced = False
            pending: dict[str, float] = {}  # worker -> when to start it again
            while not stopping and died is None:
                if not announced and _answers(host, port):
                    self._banner(host, port, nodes, broker)
                    announced = True
                time.sleep(0.3)
                if children["web server"].poll() is not None:
                    died = "web server"
                    break
                now = time.monotonic()
                for name in WORKERS:
                    proc = children[name]
                    if name in pending:
                        if now >= pending[name]:
                            del pending[name]
                            start_worker(name)
                        continue
                    if proc.poll() is None:
                        continue
                    # Its pool children may outlive it: end the whole group first.
                    self._signal(proc, signal.SIGKILL)
                    quick = now - started_at[name] < RESTART_RESET_S
                    restarts[name] = restarts.get(name, 0) + 1 if quick else 1
                    tries = restarts[name]
                    delay = 0.0 if tries == 1 else min(RESTART_MAX_DELAY_S, 2.0 ** (tries - 2))
                    self.stderr.write(
                        f"The {name} exited unexpectedly (exit code {proc.returncode}); "
                        f"restarting it{f' in {delay:.0f} s' if delay else ''}. The web server "
                        "keeps serving; its running job is re-queued."
                    )
                    pending[name] = now + delay
        finally:
            self._stop_all(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if died is not None:
            code = children[died].returncode
            raise CommandError(
                f"The {died} exited unexpectedly (exit code {code}); stopped the workers. "
                "Its output above says why."
            )
        self.stdout.write("Stopped the web server and the workers.")

    def _banner(self, host: str, port: int, nodes: dict[str, str], broker: str) -> None:
        shown_host = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - only for display
            shown_host = "127.0.0.1"
        url = f"http://{shown_host}:{port}/"
        if broker.startswith("filesystem://"):
            broker_text = (
                f"embedded filesystem broker in {settings.VAR_DIR / 'broker'} (no Redis answered; "
                "web and worker must share this folder, so one host only)"
            )
        else:
            broker_text = broker_display(broker)
        db = settings.DATABASES["default"]
        db_text = db["NAME"] if db["ENGINE"].endswith("sqlite3") else f"{db['ENGINE']} {db['NAME']}"
        prefix = settings.FRUGAL_QUEUE_PREFIX
        self.stdout.write(
            self.style.SUCCESS(f"\nFrugal is running at {url}\n")
            + f"  log in:   {url}accounts/login/  (accounts: printed by `manage.py load_demo`)\n"
            + f"  broker:   {broker_text}\n"
            + f"  database: {db_text}\n"
            + f"  workers:  {nodes['worker']}, queues {prefix}cpu and {prefix}gpu;\n"
            + f"            {nodes['interactive worker']}, queue {prefix}interactive\n"
            + "  Ctrl-C stops everything.\n"
        )

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        """SIGTERM to each main process — gunicorn stops gracefully; a Celery worker re-queues
        the job it runs and makes it stop at its next progress call (workers/celery_app.py),
        then exits — and SIGKILL to what is left after a grace period (the job is queued
        already). Only the main process gets SIGTERM: sent to the whole group it would kill the
        worker's pool child mid-job (a WorkerLostError instead of a clean stop)."""
        alive = {name: p for name, p in children.items() if p.poll() is None}
        for proc in alive.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(p.poll() is None for p in alive.values()):
            time.sleep(0.2)
        for name, proc in alive.items():
            if proc.poll() is None:
                self.stderr.write(f"The {name} did not stop in {STOP_GRACE_S} s; killing it.")
            # The group: a stopped worker's pool children, gunicorn's workers.
            self._signal(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
