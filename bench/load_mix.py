"""People and batch work together (issue 13 load check): 20 annotators while a 1M-row import runs.

A runstack-started stack (gunicorn, the cpu+gpu worker and the interactive worker, as
``make run`` starts them) on 127.0.0.1 over the ``review_load`` project (100,000 examples,
suggested rules) in its own PostgreSQL database, with Redis. ``--clients`` annotators over
HTTP: half review rules through the API (claim, decide), half label pool examples into dev on
the gold labeling page (htmx). First an idle phase (``--idle`` seconds), then the same clients
while an import of ``--import-rows`` JSONL rows into another project runs (launched through the
API, from a server path), until it ends. Reported: errors (any non-2xx other than a told 409),
decision latency p50/p95 as the client sees it, idle beside busy, in the same run. Target:
0 errors, busy review decision p95 ≤ 100 ms.

Not in the mix: a boosting round. A round needs the project's language-model cache warmed
first (SmolLM2 over every text: hours for 100,000 texts on this CPU), so the batch load here is
the import alone; ``--selftest`` adds a self-test job on the cpu queue (sleeps, little CPU).

    .venv/bin/python -m bench load_mix [--clients 20] [--import-rows 1000000] [--idle 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.examples_load import credentials, percentile, prepare_database
from bench.review_load import CSRF, Client, setup

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench_loadmix_ops"
TARGET_P95_MS = 100.0
IMPORT_PROJECT = "bench-load-mix-import"
RESULTS_JSON = ROOT / "bench" / "results" / "load_mix.json"
RESULTS_MD = ROOT / "bench" / "RESULTS-load_mix.md"


def write_import_file(path: Path, rows: int) -> None:
    rng = random.Random(3)
    words = [
        "free",
        "win",
        "call",
        "now",
        "subscribe",
        "video",
        "great",
        "song",
        "love",
        "check",
        "channel",
        "money",
    ]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
            out.write(json.dumps({"id": f"m{i}", "text": f"{text} {i}"}) + "\n")


def start_stack(*, db_url: str, port: int, broker: str, var_dir: Path, roots: Path):
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "FRUGAL_QUEUE_PREFIX": f"loadmix{os.getpid()}-",
        "FRUGAL_VAR_DIR": str(var_dir),
        "FRUGAL_IMPORT_ROOTS": str(roots),
        "FRUGAL_LOGIN_THROTTLE": "false",
        "PYTHONUNBUFFERED": "1",
    }
    log = open(var_dir / "runstack.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port), "--web-workers", "2"],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (var_dir / "runstack.log").read_text(errors="replace")
        if "Frugal is running at" in text and text.count(" ready.") >= 2:
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"runstack exited:\n{text[-3000:]}")
        time.sleep(0.5)
    raise SystemExit("runstack did not start in 120 s")


def reviewer(port, project_id, token, stop, stats, lock, seed):
    rng = random.Random(seed)
    client = Client(port, {"Authorization": f"Bearer {token}"})
    base = f"/api/v1/projects/{project_id}/rules/"
    headers = {"Content-Type": "application/json"}
    mine = {"decisions": [], "errors": 0, "requests": 0}
    while not stop.is_set():
        status, data, _ = client.request("POST", base + "next/", "claim")
        mine["requests"] += 1
        if status == 204:
            break
        if status != 200:
            mine["errors"] += 1
            continue
        rule = json.loads(data)
        body = json.dumps(
            {"action": rng.choice(["accept", "reject"]), "expected_version": rule["version"]}
        )
        status, _, ms = client.request(
            "POST", f"{base}{rule['id']}/decisions/", "decide", body=body, headers=headers
        )
        mine["requests"] += 1
        if status == 200:
            mine["decisions"].append(ms)
        elif status != 409:
            mine["errors"] += 1
    with lock:
        stats["decisions"].extend(mine["decisions"])
        stats["errors"] += mine["errors"]
        stats["requests"] += mine["requests"]


def labeler(port, project_id, cookie, stop, stats, lock, seed):
    rng = random.Random(seed)
    client = Client(port, {"Cookie": cookie, "X-CSRFToken": CSRF, "HX-Request": "true"})
    url = f"/projects/{project_id}/data/label/"
    query = "?split=dev&source=pool"
    status, data, _ = client.request("GET", url + query, "label card")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    mine = {"labels": [], "errors": 0, "requests": 1}
    while not stop.is_set() and status == 200:
        found = re.search(rb'name="example_id" value="(\d+)"', data)
        if not found:
            break
        body = urlencode(
            {
                "example_id": found.group(1).decode(),
                "label": str(rng.randrange(2)),
                "split": "dev",
                "source": "pool",
            }
        )
        status, data, ms = client.request("POST", url, "label", body=body, headers=form)
        mine["requests"] += 1
        if status == 200:
            mine["labels"].append(ms)
        else:
            mine["errors"] += 1
    with lock:
        stats["labels"].extend(mine["labels"])
        stats["errors"] += mine["errors"]
        stats["requests"] += mine["requests"]


def run_phase(*, port, project_id, creds, until) -> dict:
    stats = {"decisions": [], "labels": [], "errors": 0, "requests": 0}
    lock = threading.Lock()
    stop = threading.Event()
    threads = []
    for i, (cookie, token) in enumerate(creds):
        target, secret = (reviewer, token) if i % 2 == 0 else (labeler, cookie)
        threads.append(
            threading.Thread(target=target, args=(port, project_id, secret, stop, stats, lock, i))
        )
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    until()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    stats["seconds"] = time.perf_counter() - started
    for key in ("decisions", "labels"):
        stats[key].sort()
    return stats


def summary(stats: dict) -> dict:
    d, lab = stats["decisions"], stats["labels"]
    return {
        "seconds": stats["seconds"],
        "requests": stats["requests"],
        "errors": stats["errors"],
        "decisions": len(d),
        "decision_p50_ms": percentile(d, 50),
        "decision_p95_ms": percentile(d, 95),
        "labels": len(lab),
        "label_p50_ms": percentile(lab, 50),
        "label_p95_ms": percentile(lab, 95),
    }


def fresh_import_project(admin, *, create: bool = True):
    """The project the import writes into (the annotators' project stays as it is): emptied
    with one DELETE, then created again with ``admin`` as its admin."""
    from django.db import connection

    from apps.projects.models import Membership, Project, Role

    for old in Project.objects.filter(name=IMPORT_PROJECT):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM datasets_example WHERE project_id = %s", [old.pk])
        old.delete()
    if not create:
        return None
    project = Project.objects.create(name=IMPORT_PROJECT, labels=["HAM", "SPAM"])
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def render(result: dict) -> str:
    rows = []
    for name in ("idle", "during import"):
        s = result["phases"][name]
        rows.append(
            f"| {name} | {s['seconds']:.0f} s | {s['requests']:,} | {s['errors']} | "
            f"{s['decisions']:,} | {s['decision_p50_ms']:.1f} ms | {s['decision_p95_ms']:.1f} ms | "
            f"{s['labels']:,} | {s['label_p50_ms']:.1f} ms | {s['label_p95_ms']:.1f} ms |"
        )
    busy = result["phases"]["during import"]
    met = busy["errors"] == 0 and busy["decision_p95_ms"] <= TARGET_P95_MS
    job = result["import"]
    return "\n".join(
        [
            "# Annotators beside batch work — `bench/load_mix.py`",
            "",
            "Generated from `bench/results/load_mix.json` by the bench. A `runstack` stack (2",
            "gunicorn processes, the cpu+gpu worker, the interactive worker), client-side",
            "latency over loopback, half the clients reviewing rules through the API, half gold",
            "labeling on the page.",
            "",
            f"{result['clients']} clients, {result['machine']}, {result['date']}, load average "
            f"at the end {result['load_avg'][0]:.1f}. Import: {job['rows']:,} rows, "
            f"{job['status']} in {job['seconds']:.0f} s (queue {job['queue']}).",
            "",
            "| phase | length | requests | errors | decisions | decision p50 | decision p95 | "
            "labels | label p50 | label p95 |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Target (0 errors, decision p95 ≤ {TARGET_P95_MS:.0f} ms during the import): "
            f"{'met' if met else 'NOT met'}.",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench load_mix", description=__doc__)
    parser.add_argument("--db-url", default=DEFAULT_DB)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--idle", type=int, default=30)
    parser.add_argument("--max-busy", type=int, default=600, help="stop waiting for the import")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if args.render_only:
        RESULTS_MD.write_text(render(json.loads(RESULTS_JSON.read_text())))
        print(RESULTS_MD.read_text())
        return 0
    # One secret key for this process (which makes the annotators' sessions) and the stack.
    os.environ.setdefault("SECRET_KEY", "bench-load-mix-" + "k" * 40)
    prepare_database(args.db_url)
    from django.db import connections

    from apps.accounts.models import ApiToken
    from apps.accounts.services import create_api_token
    from apps.jobs.models import Job

    project, users, _, _ = setup(
        rows=100_000, suggestions=20_000, clients=args.clients, data_dir=args.data_dir,
        rebuild=False,
    )  # fmt: skip
    creds = [credentials(user, label="bench-mix", csrf=CSRF) for user in users]
    admin = users[0]
    target = fresh_import_project(admin)
    ApiToken.objects.filter(user=admin, name="bench-mix-admin").delete()
    _, admin_token = create_api_token(user=admin, name="bench-mix-admin")
    work = Path(tempfile.mkdtemp(prefix="frugal-load-mix-"))
    (work / "var").mkdir()
    (work / "roots").mkdir()
    print(f"writing {args.import_rows:,} rows to import ...", flush=True)
    write_import_file(work / "roots" / "mix.jsonl", args.import_rows)
    connections.close_all()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack = start_stack(
        db_url=args.db_url,
        port=port,
        broker=args.broker,
        var_dir=work / "var",
        roots=work / "roots",
    )
    try:
        print(f"idle phase: {args.clients} clients for {args.idle} s ...", flush=True)
        idle = run_phase(
            port=port, project_id=project.pk, creds=creds, until=lambda: time.sleep(args.idle)
        )
        launcher = Client(port, {"Authorization": f"Bearer {admin_token}"})
        body = json.dumps({"kind": "import_dataset", "params": {"path": "mix.jsonl"}})
        status, data, _ = launcher.request(
            "POST",
            f"/api/v1/projects/{target.pk}/jobs/",
            "launch",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        if status != 201:
            raise SystemExit(f"the import was refused: {status} {data[:500]!r}")
        job_id = json.loads(data)["id"]
        launched = time.monotonic()

        def import_done():
            deadline = launched + args.max_busy
            while time.monotonic() < deadline:
                if Job.objects.get(pk=job_id).is_finished:
                    return
                time.sleep(1)

        print("busy phase: the same clients while the import runs ...", flush=True)
        busy = run_phase(port=port, project_id=project.pk, creds=creds, until=import_done)
        job = Job.objects.get(pk=job_id)
        job_info = {
            "rows": args.import_rows,
            "status": job.status,
            "queue": job.queue,
            "seconds": (job.finished_at - job.started_at).total_seconds()
            if job.finished_at and job.started_at
            else time.monotonic() - launched,
            "error": job.error,
        }
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        fresh_import_project(admin, create=False)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs",
        "load_avg": os.getloadavg(),
        "clients": args.clients,
        "import": job_info,
        "phases": {"idle": summary(idle), "during import": summary(busy)},
    }
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(result, indent=2))
    RESULTS_MD.write_text(render(result))
    print(RESULTS_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
