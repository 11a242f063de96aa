"""Examples page and API on a 1,000,000-example PostgreSQL project, 20 concurrent clients.

Builds (once; ``--rebuild`` to redo) a project of ``--rows`` examples in a dedicated database,
filled with psycopg ``COPY`` from texts sampled from the real corpora in ``--data-dir``; serves
it with gunicorn; drives each scenario with ``wrk`` (Debian package) or, without it, a threaded
Python client; and reports client latency and *server time* (measured by a middleware added
only in the bench's gunicorn processes, ``bench/_examples_settings.py``) against the target
p95 ≤ 100 ms.

    .venv/bin/python -m bench examples_load [--rows 1000000] [--duration 15] [--clients 20]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench_examples"
PROJECT_NAME = "bench-examples-1m"
LABELS = ["DESC", "ENTY", "HUM", "ABBR", "LOC", "NUM"]
SEARCH_WORDS = [
    "love", "video", "free", "money", "check", "subscribe", "song", "call", "text", "win",
    "prize", "city", "country", "music", "channel", "phone", "friend", "world", "home", "work",
    "number", "water", "name", "year", "cause", "company", "president", "mobile", "play", "girl",
    "new york", '"check out"', "free -money", "drug", "protein", "film",
]  # fmt: skip
TARGET_P95_MS = 100.0
TIMING_HEADER = "Server-Timing"


# --- the middleware the bench's gunicorn processes add --------------------------------------


class ServerTimingMiddleware:
    """Measures each request in the web process: ``Server-Timing: app;dur=<ms>`` on the
    response, and one ``scenario<TAB>status<TAB>ms<TAB>cpu ms`` line per request in
    ``$FRUGAL_BENCH_TIMING_DIR/<pid>.tsv`` (scenario from the ``X-Bench-Scenario`` header)."""

    def __init__(self, get_response):
        self.get_response = get_response
        folder = os.environ.get("FRUGAL_BENCH_TIMING_DIR")
        self.log = None
        if folder:
            self.log = open(Path(folder) / f"{os.getpid()}.tsv", "a", buffering=1)  # noqa: SIM115

    def __call__(self, request):
        start, cpu_start = time.perf_counter(), time.process_time()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - start) * 1000
        cpu_ms = (time.process_time() - cpu_start) * 1000
        response[TIMING_HEADER] = f"app;dur={elapsed_ms:.2f}, cpu;dur={cpu_ms:.2f}"
        if self.log is not None:
            scenario = request.headers.get("X-Bench-Scenario", "-")
            self.log.write(f"{scenario}\t{response.status_code}\t{elapsed_ms:.3f}\t{cpu_ms:.3f}\n")
        return response


# --- data -------------------------------------------------------------------------------------


def corpus_texts(data_dir: Path) -> list[str]:
    """Texts of the real corpora: WRENCH sets, the SMS collection, HH-RLHF first turns."""
    texts: list[str] = []
    for folder in sorted(data_dir.glob("wrench-*")):
        for split in ("train", "valid", "test"):
            path = folder / f"{split}.json"
            if path.exists():
                for row in json.loads(path.read_text()).values():
                    text = (row.get("data") or {}).get("text")
                    if text:
                        texts.append(text)
    sms = data_dir / "sms-spam-collection" / "SMSSpamCollection"
    if sms.exists():
        for line in sms.read_text(encoding="utf-8", errors="replace").splitlines():
            if "\t" in line:
                texts.append(line.split("\t", 1)[1])
    hh = data_dir / "hh-rlhf-harmless" / "test.jsonl.gz"
    if hh.exists():
        with gzip.open(hh, "rt", encoding="utf-8") as handle:
            for line in handle:
                chosen = json.loads(line)["chosen"]
                first = chosen.split("\n\nAssistant:")[0].replace("\n\nHuman:", "").strip()
                if first:
                    texts.append(first[:1000])
    if not texts:
        raise SystemExit(f"no corpus texts found under {data_dir} (set --data-dir)")
    return texts


def ensure_database(db_url: str) -> None:
    import psycopg

    name = db_url.rsplit("/", 1)[1]
    admin_url = db_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def prepare_database(db_url: str) -> None:
    """Create and migrate the bench database, then set Django up in this process on it."""
    ensure_database(db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "apps.frugal.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "apps.frugal.settings"
    import django

    django.setup()


def fill(*, project, rows: int, texts: list[str], seed: int = 0) -> float:
    """COPY ``rows`` synthetic examples into the project; returns seconds taken."""
    from django.db import connection

    from apps.datasets.search_index import create_search_index, drop_search_index, index_project

    rng = random.Random(seed)
    k = len(LABELS)
    started = time.perf_counter()
    columns = (
        "project_id, external_id, split, text, entities, gold_label, label, confidence, "
        "label_source, label_version, votes"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor, for COPY
        drop_search_index()
        with raw.copy(f"COPY datasets_example ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                r = rng.random()
                split = "dev" if r < 0.02 else "test" if r < 0.04 else "pool"
                gold = rng.randrange(k) if split != "pool" else None
                has_label = rng.random() < 0.8
                label = rng.randrange(k) if has_label else None
                source = ("model" if rng.random() < 0.6 else "rules") if has_label else ""
                confidence = round(rng.uniform(0.3, 1.0), 4) if has_label else None
                votes = [rng.randrange(k) if rng.random() < 0.15 else -1 for _ in range(10)]
                copy.write_row(
                    (
                        project.pk,
                        f"b{i}",
                        split,
                        rng.choice(texts),
                        None,
                        gold,
                        label,
                        confidence,
                        source,
                        "bench" if has_label else "",
                        json.dumps({"external": votes}),
                    )
                )
    # As after an import and its search indexing job (the vectors filled in batches), with the
    # GIN index built once at the end instead of a million insertions into it.
    index_project(project_id=project.pk)
    create_search_index(concurrently=False, work_mem="512MB")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE datasets_example")
    return time.perf_counter() - started


def setup_project(*, rows: int, data_dir: Path, rebuild: bool):
    from django.contrib.auth import get_user_model

    from apps.datasets.models import Example
    from apps.projects.models import Membership, Project, Role

    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username="bench-annotator")
    project = Project.objects.filter(name=PROJECT_NAME).first()
    if project is not None and (rebuild or Example.objects.filter(project=project).count() != rows):
        print(f"removing the old bench project ({project.pk}) ...", flush=True)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM datasets_example WHERE project_id = %s", [project.pk])
        project.delete()
        project = None
    built = None
    if project is None:
        project = Project.objects.create(name=PROJECT_NAME, labels=LABELS)
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        texts = corpus_texts(data_dir)
        print(f"filling {rows:,} examples from {len(texts):,} corpus texts ...", flush=True)
        built = fill(project=project, rows=rows, texts=texts)
        print(f"  done in {built:.0f} s ({rows / built:,.0f} rows/s incl. index)", flush=True)
    return project, user, built


def credentials(user, *, label: str = "bench", csrf: str = "") -> tuple[str, str]:
    """(session cookie header value, API token named ``label``) for one user; ``csrf`` adds a
    CSRF cookie."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from apps.accounts.models import ApiToken
    from apps.accounts.services import create_api_token

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    ApiToken.objects.filter(user=user, name=label).delete()
    _, secret = create_api_token(user=user, name=label)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    return (f"{cookie}; csrftoken={csrf}" if csrf else cookie), secret


# --- scenarios ----------------------------------------------------------------------------------


def api_cursor(after_id: int) -> str:
    """A DRF cursor that starts after ``after_id`` (the position encoding of CursorPagination)."""
    return base64.b64encode(f"p={after_id}".encode()).decode()


def scenarios(project, id_range: tuple[int, int], rng: random.Random) -> list[dict]:
    page = f"/projects/{project.pk}/data/examples/"
    api = f"/api/v1/projects/{project.pk}/examples/"
    lo, hi = id_range

    def deep():
        return rng.randint(lo, hi)

    def filters():
        choice = rng.randrange(5)
        if choice == 0:
            return {"split": rng.choice(["dev", "test"])}
        if choice == 1:
            return {"label": rng.randrange(len(LABELS)), "min_confidence": 0.8}
        if choice == 2:
            return {"label_source": "rules", "split": "pool"}
        if choice == 3:
            return {"gold_label": rng.randrange(len(LABELS))}
        if rng.random() < 0.5:
            return {"label": "none"}
        return {"max_confidence": 0.5, "label": rng.randrange(len(LABELS))}

    def search():
        return {"search": rng.choice(SEARCH_WORDS)}

    n = 400
    return [
        {"name": "baseline: login page", "paths": ["/accounts/login/"], "headers": {}},
        {"name": "page: first page", "paths": [page], "headers": {}},
        {
            "name": "page: deep keyset pages",
            "paths": [f"{page}?after={deep()}" for _ in range(n)],
            "headers": {},
        },
        {
            "name": "page: filters",
            "paths": [f"{page}?{urlencode(filters())}" for _ in range(n)],
            "headers": {},
        },
        {
            "name": "page: search",
            "paths": [f"{page}?{urlencode(search())}" for _ in range(n)],
            "headers": {},
        },
        {
            "name": "page: search + filters (htmx)",
            "paths": [f"{page}?{urlencode({**search(), **filters()})}" for _ in range(n)],
            "headers": {"HX-Request": "true"},
        },
        {"name": "api: first page", "paths": [api], "headers": {}},
        {
            "name": "api: deep cursor pages",
            "paths": [f"{api}?cursor={quote(api_cursor(deep()))}" for _ in range(n)],
            "headers": {},
        },
        {
            "name": "api: filters",
            "paths": [f"{api}?{urlencode(filters())}" for _ in range(n)],
            "headers": {},
        },
        {
            "name": "api: search",
            "paths": [f"{api}?{urlencode(search())}" for _ in range(n)],
            "headers": {},
        },
    ]


# --- load generation --------------------------------------------------------------------------

WRK_SCRIPT = """
local paths = {%(paths)s}
local headers = {%(headers)s}
local counter = 0
function init(args)
  counter = math.random(1, #paths)
end
function request()
  counter = counter %% #paths + 1
  return wrk.format("GET", paths[counter], headers)
end
function done(summary, latency, requests)
  io.write(string.format("BENCH %%d %%d %%.3f %%.3f %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(*, base: str, scenario: dict, headers: dict, clients: int, duration: int) -> dict:
    all_headers = {**headers, **scenario["headers"], "X-Bench-Scenario": scenario["name"]}
    script = WRK_SCRIPT % {
        "paths": ", ".join(lua_string(p) for p in scenario["paths"]),
        "headers": ", ".join(
            f"[{lua_string(k)}] = {lua_string(v)}" for k, v in all_headers.items()
        ),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{clients}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                handle.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("BENCH "))
    requests, duration_us, p50, p95, bad_status, errors = line.split()[1:]
    return {
        "requests": int(requests),
        "rps": int(requests) / (int(duration_us) / 1e6),
        "client_p50": float(p50),
        "client_p95": float(p95),
        "errors": int(bad_status) + int(errors),
    }


def run_python_client(
    *, host: str, port: int, scenario: dict, headers: dict, clients: int, duration: int
) -> dict:
    """Without wrk: ``clients`` threads on keep-alive connections for ``duration`` seconds."""
    import http.client

    all_headers = {**headers, **scenario["headers"], "X-Bench-Scenario": scenario["name"]}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + duration
    paths = scenario["paths"]

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        i = offset
        mine: list[float] = []
        while time.perf_counter() < deadline:
            i += 1
            start = time.perf_counter()
            try:
                conn.request("GET", paths[i % len(paths)], headers=all_headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                ok = False
            mine.append((time.perf_counter() - start) * 1000)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "client_p50": percentile(latencies, 50),
        "client_p95": percentile(latencies, 95),
        "errors": errors[0],
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def server_times(timing_dir: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU milliseconds per scenario from the timing middleware's logs
    (``scenario<TAB>status<TAB>wall ms[<TAB>cpu ms]`` lines)."""
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for path in timing_dir.glob("*.tsv"):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                wall.setdefault(parts[0], []).append(float(parts[2]))
            if len(parts) >= 4:
                cpu.setdefault(parts[0], []).append(float(parts[3]))
    return wall, cpu


# --- gunicorn ---------------------------------------------------------------------------------


def start_gunicorn(*, db_url: str, port: int, workers: int, timing_dir: Path):
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "bench._examples_settings",
        "FRUGAL_BENCH_TIMING_DIR": str(timing_dir),
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [
            str(gunicorn),
            "apps.frugal.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    import urllib.request

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("gunicorn exited during start-up") from None
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("gunicorn did not answer within 60 s")


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench examples_load", description=__doc__)
    parser.add_argument("--db-url", default=os.environ.get("FRUGAL_BENCH_EXAMPLES_DB", DEFAULT_DB))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the bench project")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=int, default=15, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args(argv)

    prepare_database(args.db_url)
    from django.db.models import Max, Min

    from apps.datasets.models import Example

    project, user, built = setup_project(
        rows=args.rows, data_dir=args.data_dir, rebuild=args.rebuild
    )
    cookie, token = credentials(user)
    bounds = Example.objects.filter(project=project).aggregate(lo=Min("id"), hi=Max("id"))
    from django.db import connections

    connections.close_all()

    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    timing_dir = Path(tempfile.mkdtemp(prefix="frugal-bench-examples-"))
    server = start_gunicorn(
        db_url=args.db_url, port=args.port, workers=args.workers, timing_dir=timing_dir
    )
    rng = random.Random(1)
    results = []
    try:
        for scenario in scenarios(project, (bounds["lo"], bounds["hi"]), rng):
            if args.only and args.only not in scenario["name"]:
                continue
            headers = (
                {"Authorization": f"Bearer {token}"}
                if scenario["name"].startswith("api")
                else {"Cookie": cookie}
            )
            # Warm up: every distinct path once, so the first-request costs are not measured.
            warm = dict(scenario, name="warmup", paths=scenario["paths"][:40])
            run_python_client(
                host="127.0.0.1", port=args.port, scenario=warm, headers=headers, clients=4,
                duration=2,
            )  # fmt: skip
            # One client alone: the request's own cost on this machine, no queueing for CPU.
            solo = dict(scenario, name=f"{scenario['name']}|solo")
            run_python_client(
                host="127.0.0.1", port=args.port, scenario=solo, headers=headers, clients=1,
                duration=max(2, args.duration // 3),
            )  # fmt: skip
            print(f"running {scenario['name']} ...", flush=True)
            if use_wrk:
                client = run_wrk(
                    base=f"http://127.0.0.1:{args.port}",
                    scenario=scenario,
                    headers=headers,
                    clients=args.clients,
                    duration=args.duration,
                )
            else:
                client = run_python_client(
                    host="127.0.0.1",
                    port=args.port,
                    scenario=scenario,
                    headers=headers,
                    clients=args.clients,
                    duration=args.duration,
                )
            results.append((scenario["name"], client))
    finally:
        stop(server)
    times, cpu_times = server_times(timing_dir)
    shutil.rmtree(timing_dir, ignore_errors=True)

    print()
    print(
        f"examples_load: {args.rows:,} examples, {args.clients} clients, "
        f"{args.workers} gunicorn workers, {os.cpu_count()} CPUs, "
        f"client={'wrk' if use_wrk else 'python threads'}, {args.duration} s per scenario, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if built:
        print(f"data build: {built:.0f} s ({args.rows / built:,.0f} rows/s, COPY + GIN index)")
    load = os.getloadavg()
    print(f"machine load average during the run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min)")
    header = (
        f"| {'scenario':<32} | {'solo p50':>9} | {'solo p95':>9} | {'requests':>8} | "
        f"{'req/s':>6} | {'errors':>6} | {'client p50':>10} | {'client p95':>10} | "
        f"{'server p50':>10} | {'server p95':>10} | {'CPU p50':>8} | {'p95 ≤ 100 ms':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    failed = 0
    for name, client in results:
        server = sorted(times.get(name, []))
        p50, p95 = percentile(server, 50), percentile(server, 95)
        solo = sorted(times.get(f"{name}|solo", []))
        ok = p95 <= TARGET_P95_MS and client["errors"] == 0
        failed += not ok
        print(
            f"| {name:<32} | {percentile(solo, 50):>6.1f} ms | {percentile(solo, 95):>6.1f} ms | "
            f"{client['requests']:>8} | {client['rps']:>6.0f} | "
            f"{client['errors']:>6} | {client['client_p50']:>7.1f} ms | "
            f"{client['client_p95']:>7.1f} ms | {p50:>7.1f} ms | {p95:>7.1f} ms | "
            f"{percentile(sorted(cpu_times.get(name, [])), 50):>5.1f} ms | "
            f"{'yes' if ok else 'NO':>12} |"
        )
    all_server = sorted(
        t for name, _ in results if not name.startswith("baseline") for t in times.get(name, [])
    )
    if all_server:
        print(
            f"examples scenarios together: server p50 {statistics.median(all_server):.1f} ms, "
            f"p95 {percentile(all_server, 95):.1f} ms over {len(all_server):,} requests"
        )
    return 0 if failed == 0 else 1
