"""Import 1M JSONL rows into PostgreSQL, export 1M rows as JSONL/Parquet; rates and peak memory.

    python -m bench import_export [--rows N] [--small N] [--data-dir DIR] [--database-url URL]

Builds a JSONL file by sampling real texts (wrench youtube/sms/trec/semeval), creates the
dedicated database ``frugal_bench`` (migrated from scratch), then measures in subprocesses, each
a fresh Python like a worker or a web process, reading its peak RSS from ``wait4``:
- import of N and of --small rows: the ``import_dataset`` job end to end (``run_job`` as a worker
  runs it: claim, the pipeline's stream/check/COPY in one transaction, commit, the job's result),
  timed until its rows are committed and the job is marked succeeded;
- the ``index_search`` job that import launches at commit (filling the stored full-text
  vectors in batches), run the same way right after it;
- export of both projects through the real view (Django test client, streamed body discarded).
In-run baselines: a bare process's startup RSS, a parse-only pass over the same file, and a
plain COPY of the same rows (parse, then COPY, in one thread, no checks, rolled back: the
naive loop the import's pipeline is measured against). The database is dropped at the end
unless --keep.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench"
CORPORA = ("youtube", "sms", "trec", "semeval")


def sample_texts(data_dir: Path) -> dict[str, list[str]]:
    """Real texts per corpus."""
    texts: dict[str, list[str]] = {}
    for name in CORPORA:
        folder = data_dir / f"wrench-{name}"
        found = []
        for split in ("train", "valid", "test"):
            path = folder / f"{split}.json"
            if path.exists():
                found += [r["data"]["text"] for r in json.loads(path.read_text()).values()]
        texts[name] = found
    sms = data_dir / "sms-spam-collection" / "SMSSpamCollection"
    if sms.exists():
        texts["sms"] += [
            line.split("\t", 1)[1] for line in sms.read_text().splitlines() if "\t" in line
        ]
    trec = data_dir / "trec" / "train.json"
    if trec.exists():
        texts["trec"] += [json.loads(line)["sentence"] for line in trec.read_text().splitlines()]
    return {k: v for k, v in texts.items() if v}


def build_jsonl(path: Path, rows: int, texts: dict[str, list[str]], seed: int = 0) -> int:
    """Rows like a real WRENCH-style set: 98% unlabeled pool with 10 rule votes, 1% dev, 1% test."""
    rng = random.Random(seed)
    corpora = list(texts)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            corpus = rng.choice(corpora)
            text = rng.choice(texts[corpus])
            roll = rng.random()
            split = "dev" if roll < 0.01 else ("test" if roll < 0.02 else "pool")
            row = {
                "id": f"b{i}",
                "text": text,
                "split": split,
                "label": corpus if split != "pool" else None,
                "weak_labels": [rng.choice((-1, -1, -1, 0, 1, 2, 3)) for _ in range(10)],
            }
            out.write(json.dumps(row) + "\n")
    return path.stat().st_size


def run_child(args: list[str], env: dict) -> tuple[dict, float, float]:
    """Run ``python -m bench.import_export --child ...``; (its JSON result, wall s, peak MB)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.import_export", "--child", *args],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {args} failed: {out.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024


def child(argv: list[str]) -> int:
    """Runs inside the subprocess: ``import PROJECT PATH`` or ``export PROJECT FORMAT USER``."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.frugal.settings")
    django.setup()
    from apps.projects.models import Project

    if argv[0] in ("import", "index"):
        # A queued job (launched by the parent), run as a worker runs it.
        from apps.jobs.models import Job, JobStatus
        from workers.base import run_job
        from workers.dataset_tasks import handle_import, handle_index_search

        handler = handle_import if argv[0] == "import" else handle_index_search
        started = time.perf_counter()
        run_job(int(argv[1]), handler)
        seconds = time.perf_counter() - started
        job = Job.objects.get(pk=int(argv[1]))
        assert job.status == JobStatus.SUCCEEDED, (job.status, job.error)
        rows = job.result["rows"] if argv[0] == "import" else job.result["indexed"]
        print(json.dumps({"rows": rows, "seconds": seconds, "result": job.result}))
    elif argv[0] == "export":
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client()
        client.force_login(get_user_model().objects.get(username=argv[3]))
        started = time.perf_counter()
        response = client.get(f"/api/v1/projects/{argv[1]}/export/?format={argv[2]}")
        assert response.status_code == 200 and response.streaming
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
        rows = lines if argv[2] == "jsonl" else Project.objects.get(pk=argv[1]).examples.count()
        print(json.dumps({"rows": rows, "bytes": size, "seconds": seconds}))
    elif argv[0] == "startup":
        print(json.dumps({"rows": 0, "seconds": 0}))
    elif argv[0] == "copy":
        # The naive loop: the same rows parsed and sent in one thread, no checks; rolled back.
        from django.db import connection, transaction

        from apps.datasets.pipeline.writers import ExampleWriter, copy_row

        project = Project.objects.get(pk=int(argv[1]))
        writer = ExampleWriter(project=project, problems=None, check_existing=False, use_copy=True)
        started = time.perf_counter()
        rows = 0
        with transaction.atomic(), connection.cursor() as cursor:
            with writer.open_copy(cursor.cursor) as copy, open(argv[2], encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    votes = {"external": r["weak_labels"]}
                    row = (r["id"], r["split"], r["text"], None, None, None, None, "", "", votes)
                    copy.write_row(copy_row(project.pk, row))
                    rows += 1
            seconds = time.perf_counter() - started
            transaction.set_rollback(True)
        print(json.dumps({"rows": rows, "seconds": seconds}))
    elif argv[0] == "parse":
        started = time.perf_counter()
        rows = 0
        with open(argv[1], encoding="utf-8") as handle:
            for line in handle:
                json.loads(line)
                rows += 1
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))
    return 0


def ensure_database(url: str, drop: bool = False) -> None:
    import psycopg
    from psycopg import sql

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and drop:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = None
        if not exists and not drop:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        return child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench import_export", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    load_before = f"{os.getloadavg()[0]:.1f}"
    texts = sample_texts(data_dir)
    if not texts:
        print(f"no corpora found under {data_dir}; give --data-dir")
        return 1
    tmp = tempfile.TemporaryDirectory(prefix="frugal-bench-")
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_SETTINGS_MODULE": "apps.frugal.settings",
        "FRUGAL_IMPORT_MAX_BYTES": str(8 * 1024**3),
        # The import job reads its file as a server-side path below an import root.
        "FRUGAL_IMPORT_ROOTS": tmp.name,
        # Jobs launched here are run by the bench's own subprocesses: their broker messages
        # go to an in-process transport and are dropped.
        "CELERY_BROKER_URL": "memory://",
        "OMP_NUM_THREADS": "1",
        "DB_CONN_MAX_AGE": "0",
    }
    os.environ.update(env)
    ensure_database(args.database_url, drop=True)  # a clean slate each run
    ensure_database(args.database_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from apps.datasets.import_services import IMPORT_JOB_KIND, build_params
    from apps.jobs.services import launch_job
    from apps.projects.models import Membership, Project

    user = get_user_model().objects.create_user("bench", password=None)
    labels = list(texts)
    results = []
    with tmp:
        for rows in (args.small, args.rows):
            path = Path(tmp.name) / f"rows-{rows}.jsonl"
            size = build_jsonl(path, rows, texts)
            project = Project.objects.create(name=f"bench {rows}", labels=labels)
            Membership.objects.create(project=project, user=user, role="annotator")
            _, _, startup = run_child(["startup"], env)
            results.append(("process startup (baseline)", rows, None, startup, None))
            parsed, _, _ = run_child(["parse", str(path)], env)
            results.append(("parse only (baseline)", rows, parsed["seconds"], None, size / 1e6))
            params = build_params(source="path", path=path, fmt="jsonl")
            job = launch_job(kind=IMPORT_JOB_KIND, project=project, user=user, params=params)
            done, wall, peak = run_child(["import", str(job.pk)], env)
            assert done["rows"] == rows, done
            results.append(("import job JSONL → PG", rows, done["seconds"], peak, size / 1e6))
            index_job = done["result"]["search_index_job"]
            indexed, wall, peak = run_child(["index", str(index_job)], env)
            assert indexed["rows"] == rows, indexed
            results.append(("then search indexing job", rows, indexed["seconds"], peak, None))
            for fmt in ("jsonl", "parquet"):
                out, wall, peak = run_child(["export", str(project.pk), fmt, "bench"], env)
                assert out["rows"] == rows, out
                results.append(
                    (f"export {fmt} (view)", rows, out["seconds"], peak, out["bytes"] / 1e6)
                )
            # The plain COPY runs last, into another project: its rolled-back rows leave dead
            # index entries, and run before the import (same ids, same project) they made each
            # unique check of the import visit the heap (runs before 2026-11-28 15:00 did so).
            scratch = Project.objects.create(name=f"bench {rows} plain copy", labels=labels)
            copied, _, _ = run_child(["copy", str(scratch.pk), str(path)], env)
            results.append(("plain COPY, 1 thread", rows, copied["seconds"], None, size / 1e6))
            path.unlink()
    print()
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.1f}")
    print(f"{'step':<28} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'MB':>8}")
    for step, rows, seconds, peak, megabytes in results:
        print(
            f"{step:<28} {rows:>10,} {'' if seconds is None else f'{seconds:.2f}':>8} "
            f"{'' if seconds is None else f'{rows / seconds:,.0f}':>10} "
            f"{'' if peak is None else f'{peak:.0f}':>12} "
            f"{'' if megabytes is None else f'{megabytes:.1f}':>8}"
        )
    print("\ntargets: import ≥ 50,000 rows/s with peak ≤ 500 MB; export ≥ 100,000 rows/s with")
    print(
        "peak memory about the same at both sizes. Machine:",
        os.uname().machine,
        os.cpu_count(),
        "CPUs",
    )
    if not args.keep:
        from django.db import connections

        connections.close_all()
        ensure_database(args.database_url, drop=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
