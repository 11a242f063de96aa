"""People and batch work together (issue 13 load check): 20 annotators while a 1M-row import
and a boosting round run.

A runstack-started stack (gunicorn, the cpu+gpu worker and the interactive worker, as
``make run`` starts them, with ``FRUGAL_SERVER_TIMING`` on) on 127.0.0.1 over the
``review_load`` project (100,000 examples, suggested rules) in its own PostgreSQL database, with
Redis. ``--clients`` annotators over HTTP: half review rules through the API (claim, decide),
half label pool examples into dev on the gold labeling page (htmx); each waits ``--think``
seconds on average (uniform 0.5–1.5×) between one answer and the next, as a person reads the
next card (``--think 0``: back to back, a stress test of throughput, not of 20 people). First an
idle phase (``--idle`` seconds), then the same clients while two batch jobs run until both end
(and what they launch, e.g. the search indexing of the imported rows): an import of
``--import-rows`` JSONL rows into another project (interactive queue) and a
boosting round (PRBoost, n-gram proposer) on ``--round-dataset`` (a WRENCH set imported once
into a third project, its embedding cache warmed before the idle phase and kept in
``--model-cache-dir``; the round itself runs from scratch every time, on the cpu queue). Both are
launched through the API.

Reported per phase: errors (any non-2xx other than a told 409); decision and label latency p50/p95
as the client sees it and as the server measured it (``Server-Timing: app``; the difference is
time waiting for a free web thread plus loopback); the load average at the phase's end. Idle
beside busy, in the same run. Target: 0 errors, busy review decision p95 ≤ 100 ms.

    .venv/bin/python -m bench load_mix [--clients 20] [--think 1] [--import-rows 1000000]
        [--idle 30] [--no-round]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
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
from bench.prboost_round import _reset as reset_round_project
from bench.review_load import CSRF, Client, setup

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench_loadmix_ops"
TARGET_P95_MS = 100.0
IMPORT_PROJECT = "bench-load-mix-import"
ROUND_PROJECT = "bench-load-mix-round"
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


def start_stack(
    *,
    db_url: str,
    port: int,
    broker: str,
    var_dir: Path,
    roots: Path,
    model_cache: Path,
    workers: int = 2,
    threads: int = 4,
):
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "FRUGAL_QUEUE_PREFIX": f"loadmix{os.getpid()}-",
        "FRUGAL_VAR_DIR": str(var_dir),
        "FRUGAL_IMPORT_ROOTS": str(roots),
        "FRUGAL_LOGIN_THROTTLE": "false",
        "FRUGAL_SERVER_TIMING": "true",
        "FRUGAL_MODEL_CACHE_DIR": str(model_cache),
        "PYTHONUNBUFFERED": "1",
    }
    log = open(var_dir / "runstack.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runstack",
            "--port",
            str(port),
            "--web-workers",
            str(workers),
            "--web-threads",
            str(threads),
        ],  # fmt: skip
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


def pause(stop, rng, think: float) -> None:
    """A person's reading time before the next answer: uniform in 0.5–1.5 × ``think`` s."""
    if think > 0:
        stop.wait(rng.uniform(0.5 * think, 1.5 * think))


def reviewer(port, project_id, token, stop, stats, lock, seed, think, tag):
    rng = random.Random(seed)
    client = Client(port, {"Authorization": f"Bearer {token}"})
    base = f"/api/v1/projects/{project_id}/rules/"
    headers = {"Content-Type": "application/json"}
    mine = {"decisions": [], "decisions_server": [], "errors": 0, "requests": 0}
    while not stop.is_set():
        status, data, _ = client.request("POST", base + "next/", f"{tag}: claim")
        mine["requests"] += 1
        if status == 204:
            break
        if status != 200:
            mine["errors"] += 1
            continue
        rule = json.loads(data)
        pause(stop, rng, think)
        body = json.dumps(
            {"action": rng.choice(["accept", "reject"]), "expected_version": rule["version"]}
        )
        status, _, ms = client.request(
            "POST", f"{base}{rule['id']}/decisions/", f"{tag}: decide", body=body, headers=headers
        )
        mine["requests"] += 1
        if status == 200:
            mine["decisions"].append(ms)
            if client.server_ms is not None:
                mine["decisions_server"].append(client.server_ms)
        elif status != 409:
            mine["errors"] += 1
    with lock:
        for key, value in mine.items():
            stats[key] += value


def labeler(port, project_id, cookie, stop, stats, lock, seed, think, tag):
    rng = random.Random(seed)
    client = Client(port, {"Cookie": cookie, "X-CSRFToken": CSRF, "HX-Request": "true"})
    url = f"/projects/{project_id}/data/label/"
    query = "?split=dev&source=pool"
    status, data, _ = client.request("GET", url + query, f"{tag}: label card")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    mine = {"labels": [], "labels_server": [], "errors": 0, "requests": 1}
    while not stop.is_set() and status == 200:
        found = re.search(rb'name="example_id" value="(\d+)"', data)
        if not found:
            break
        pause(stop, rng, think)
        if stop.is_set():
            break
        body = urlencode(
            {
                "example_id": found.group(1).decode(),
                "label": str(rng.randrange(2)),
                "split": "dev",
                "source": "pool",
            }
        )
        status, data, ms = client.request("POST", url, f"{tag}: label", body=body, headers=form)
        mine["requests"] += 1
        if status == 200:
            mine["labels"].append(ms)
            if client.server_ms is not None:
                mine["labels_server"].append(client.server_ms)
        else:
            mine["errors"] += 1
    with lock:
        for key, value in mine.items():
            stats[key] += value


def run_phase(*, port, project_id, creds, until, think: float, tag: str, seed: int) -> dict:
    stats = {
        "decisions": [],
        "decisions_server": [],
        "labels": [],
        "labels_server": [],
        "errors": 0,
        "requests": 0,
    }
    lock = threading.Lock()
    stop = threading.Event()
    threads = []
    for i, (cookie, token) in enumerate(creds):
        target, secret = (reviewer, token) if i % 2 == 0 else (labeler, cookie)
        threads.append(
            threading.Thread(
                target=target,
                args=(port, project_id, secret, stop, stats, lock, seed + i, think, tag),
                daemon=True,
            )
        )
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        until()
    finally:  # Ctrl-C or SIGTERM too: the clients stop, then main() stops the stack
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    stats["seconds"] = time.perf_counter() - started
    stats["load_avg"] = os.getloadavg()[0]
    for key in ("decisions", "decisions_server", "labels", "labels_server"):
        stats[key].sort()
    return stats


def summary(stats: dict) -> dict:
    out = {
        "seconds": stats["seconds"],
        "requests": stats["requests"],
        "errors": stats["errors"],
        "load_avg": stats["load_avg"],
        "decisions": len(stats["decisions"]),
        "labels": len(stats["labels"]),
    }
    for key in ("decisions", "decisions_server", "labels", "labels_server"):
        name = key.replace("decisions", "decision").replace("labels", "label")
        for q in (50, 95):
            out[f"{name}_p{q}_ms"] = percentile(stats[key], q)
    return out


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


def round_project(admin, *, data_dir: Path, dataset: str):
    """The project the boosting round runs on: ``dataset`` (a WRENCH folder) imported once,
    ``admin`` its admin; earlier rounds, label sets and rules removed, so that every run's
    round is round 1 from the same state."""
    from apps.datasets.pipeline import ImportOptions, import_examples
    from apps.projects.models import Membership, Project, Role

    project = Project.objects.filter(name=ROUND_PROJECT).first()
    if project is None:
        labels = json.loads((data_dir / dataset / "label.json").read_text(encoding="utf-8"))
        project = Project.objects.create(
            name=ROUND_PROJECT, labels=[labels[str(i)] for i in range(len(labels))]
        )
    Membership.objects.update_or_create(project=project, user=admin, defaults={"role": Role.ADMIN})
    if not project.examples.exists():
        import_examples(
            project=project,
            path=data_dir / dataset,
            options=ImportOptions(format="wrench", display_name=dataset),
        )
    reset_round_project(project)
    return project


def launch(port: int, token: str, project_id: int, kind: str, params: dict | None = None) -> int:
    client = Client(port, {"Authorization": f"Bearer {token}"})  # a fresh connection
    body = json.dumps({"kind": kind, "params": params or {}})
    status, data, _ = client.request(
        "POST",
        f"/api/v1/projects/{project_id}/jobs/",
        "launch",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    if status != 201:
        raise SystemExit(f"{kind} was refused: {status} {data[:500]!r}")
    return json.loads(data)["id"]


def wait_for(job_ids: list[int], *, timeout: float, project_ids=()) -> None:
    """Until the jobs have finished, and with ``project_ids`` every job launched in those
    projects since (the search indexing an import launches as it commits is part of the
    import's work)."""
    from apps.jobs.models import Job

    followers = Job.objects.filter(project_id__in=project_ids, pk__gt=min(job_ids))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(job.is_finished for job in Job.objects.filter(pk__in=job_ids)) and all(
            job.is_finished for job in followers.all()
        ):
            return
        time.sleep(1)


def job_info(job_id: int, fallback_s: float) -> dict:
    from apps.jobs.models import Job

    job = Job.objects.get(pk=job_id)
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "queue": job.queue,
        "seconds": (job.finished_at - job.started_at).total_seconds()
        if job.finished_at and job.started_at
        else fallback_s,
        "error": job.error,
    }


def render(result: dict) -> str:
    rows = []
    busy_name = result.get("busy_name", "during import")
    for name in ("idle", busy_name):
        s = result["phases"][name]
        rows.append(
            f"| {name} | {s['seconds']:.0f} s | {s['load_avg']:.1f} | {s['requests']:,} | "
            f"{s['errors']} | {s['decisions']:,} | {s['decision_p50_ms']:.1f} / "
            f"{s['decision_p95_ms']:.1f} ms | {s['decision_server_p50_ms']:.1f} / "
            f"{s['decision_server_p95_ms']:.1f} ms | {s['labels']:,} | {s['label_p50_ms']:.1f} / "
            f"{s['label_p95_ms']:.1f} ms | {s['label_server_p50_ms']:.1f} / "
            f"{s['label_server_p95_ms']:.1f} ms |"
        )
    busy = result["phases"][busy_name]
    met = busy["errors"] == 0 and busy["decision_p95_ms"] <= TARGET_P95_MS
    jobs = []
    for job in result["jobs"]:
        jobs.append(
            f"{job['label']}: {job['status']} in {job['seconds']:.0f} s (queue {job['queue']})"
        )
    think = result.get("think", 0.0)
    pace = (
        f"each waits {think:g} s on average (uniform {0.5 * think:g}–{1.5 * think:g} s) between "
        "one answer and the next"
        if think
        else "back to back, no pause between answers (a throughput stress test)"
    )
    return "\n".join(
        [
            "# Annotators beside batch work — `bench/load_mix.py`",
            "",
            "Generated from `bench/results/load_mix.json` by the bench "
            f"(`{result.get('command', 'python -m bench load_mix')}`). A `runstack` stack "
            f"({result.get('web', '2 gunicorn processes')}, the cpu+gpu worker, the interactive "
            "worker, both at nice 10), 127.0.0.1; half the clients review rules through the API, "
            f"half label on the gold labeling page; {pace}. Latency as the client sees it and as "
            "the server measured it (`Server-Timing: app`; the rest is waiting for a free web "
            "thread, and the client threads' own share of the CPUs).",
            "",
            f"{result['clients']} clients, {result['machine']}, {result['date']}; the load "
            "average (1 min) at the end of each phase is in the table — other sessions shared "
            "the machine, so compare phases of the same run only.",
            f"Batch work: {'; '.join(jobs)}.",
            "",
            "| phase | length | load avg | requests | errors | decisions | decision p50 / p95 "
            "(client) | decision p50 / p95 (server) | labels | label p50 / p95 (client) | "
            "label p50 / p95 (server) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Target (0 errors, decision p95 ≤ {TARGET_P95_MS:.0f} ms {busy_name}, client "
            f"side): {'met' if met else 'NOT met'}.",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench load_mix", description=__doc__)
    parser.add_argument("--db-url", default=DEFAULT_DB)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds between a person's answers"
    )
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--idle", type=int, default=30)
    parser.add_argument("--no-round", action="store_true", help="the import alone as batch work")
    parser.add_argument("--round-dataset", default="wrench-youtube")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--max-busy", type=int, default=600, help="stop waiting for the jobs")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--model-cache-dir",
        type=Path,
        default=ROOT / "var" / "bench-load-mix-model-cache",
        help="the round project's embedding cache (kept between runs)",
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if args.render_only:
        RESULTS_MD.write_text(render(json.loads(RESULTS_JSON.read_text())))
        print(RESULTS_MD.read_text())
        return 0
    # Ctrl-C and SIGTERM end the run cleanly (clients, then the stack, then the import
    # project), even when started in the background, where a shell ignores SIGINT for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # One secret key for this process (which makes the annotators' sessions) and the stack.
    os.environ.setdefault("SECRET_KEY", "bench-load-mix-" + "k" * 40)
    prepare_database(args.db_url)
    from django.db import connections

    from apps.accounts.models import ApiToken
    from apps.accounts.services import create_api_token

    project, users, _, _ = setup(
        rows=100_000, suggestions=20_000, clients=args.clients, data_dir=args.data_dir,
        rebuild=False,
    )  # fmt: skip
    # Every run starts from the same examples: the gold labels earlier runs' labelers gave
    # (pool examples they moved into dev) are taken back, so the dev split the labeling page
    # counts does not grow from run to run.
    from apps.datasets.models import Example

    Example.objects.filter(project=project, gold_labeled_by__in=users).update(
        split="pool", gold_label=None, gold_labeled_by=None, gold_labeled_at=None
    )
    creds = [credentials(user, label="bench-mix", csrf=CSRF) for user in users]
    admin = users[0]
    target = fresh_import_project(admin)
    rounds = None
    if not args.no_round:
        rounds = round_project(admin, data_dir=args.data_dir, dataset=args.round_dataset)
    ApiToken.objects.filter(user=admin, name="bench-mix-admin").delete()
    _, admin_token = create_api_token(user=admin, name="bench-mix-admin")
    work = Path(tempfile.mkdtemp(prefix="frugal-load-mix-"))
    (work / "var").mkdir()
    (work / "roots").mkdir()
    args.model_cache_dir.mkdir(parents=True, exist_ok=True)
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
        model_cache=args.model_cache_dir,
        workers=args.web_workers,
        threads=args.web_threads,
    )
    busy_name = "during import" + ("" if rounds is None else " + round")
    jobs = []
    try:
        if rounds is not None:
            # The round's one-time pass (embeddings, cached on disk): minutes the first time,
            # seconds afterwards; not part of the measurement.
            print("warming the round project's cache ...", flush=True)
            warm = launch(port, admin_token, rounds.pk, "prboost_warm_cache")
            wait_for([warm], timeout=1800)
            info = job_info(warm, 0.0)
            if info["status"] != "succeeded":
                raise SystemExit(f"the cache warm-up ended {info['status']}: {info['error']}")
        print(f"idle phase: {args.clients} clients for {args.idle} s ...", flush=True)
        idle = run_phase(
            port=port,
            project_id=project.pk,
            creds=creds,
            until=lambda: time.sleep(args.idle),
            think=args.think,
            tag="idle",
            seed=0,
        )
        launched = time.monotonic()
        job_ids = [launch(port, admin_token, target.pk, "import_dataset", {"path": "mix.jsonl"})]
        if rounds is not None:
            job_ids.append(launch(port, admin_token, rounds.pk, "train_prboost_round"))
        busy_projects = [target.pk] + ([] if rounds is None else [rounds.pk])
        print(f"busy phase: the same clients {busy_name} ...", flush=True)
        busy = run_phase(
            port=port,
            project_id=project.pk,
            creds=creds,
            until=lambda: wait_for(job_ids, timeout=args.max_busy, project_ids=busy_projects),
            think=args.think,
            tag="busy",
            seed=1000,
        )
        from apps.jobs.models import Job

        labels = [f"import of {args.import_rows:,} rows", f"boosting round ({args.round_dataset})"]
        followers = Job.objects.filter(project_id__in=busy_projects, pk__gt=min(job_ids))
        followers = followers.exclude(pk__in=job_ids).order_by("pk")
        for job in followers:
            job_ids.append(job.pk)
            labels.append(f"then {job.kind}")
        for job_id, label in zip(job_ids, labels, strict=False):
            jobs.append({**job_info(job_id, time.monotonic() - launched), "label": label})
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        fresh_import_project(admin, create=False)
        shutil.rmtree(work, ignore_errors=True)
    shown = " ".join(["python -m bench load_mix", *argv])
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": shown,
        "machine": f"{os.cpu_count()} CPUs",
        "web": f"{args.web_workers} gunicorn processes × {args.web_threads} threads",
        "load_avg": os.getloadavg(),
        "clients": args.clients,
        "think": args.think,
        "jobs": jobs,
        "busy_name": busy_name,
        "phases": {"idle": summary(idle), busy_name: summary(busy)},
    }
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(result, indent=2))
    RESULTS_MD.write_text(render(result))
    print(RESULTS_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
