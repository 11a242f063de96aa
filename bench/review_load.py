"""Rule review under load: 20 annotators deciding at once on a 100,000-example project.

Builds (once; ``--rebuild`` to redo) a project of ``--rows`` examples sampled from the real
corpora in a dedicated PostgreSQL database (``frugal_bench_review``) with ``--suggestions``
suggested keyword rules in one round; serves it with gunicorn on 127.0.0.1; then
``--clients`` annotator threads (one user and one keep-alive connection each) loop
claim → decide through the real endpoints:

- ``api: claim next`` / ``api: decide``: ``POST /api/v1/projects/<id>/rules/next/`` then
  ``POST .../rules/<rule_id>/decisions/`` (token auth). After one decision in 10 the same
  decision is sent again on the version just decided, as a second annotator would, so the 409
  path is part of the mix (``api: decide (stale, 409)``).
- ``page: decide + next card (htmx)``: the review screen's own POST, which decides and renders
  the next suggestion's card (session auth, CSRF).
- ``page: live preview (htmx)``: the edit form's preview on all 100,000 examples, one typist.

Server time comes from a middleware in the bench's gunicorn processes (the one
``bench/examples_load.py`` defines). Also measured in-process: ``preview_rule`` for keyword and
regex rules on the same 100,000 examples. Targets: decision server p95 ≤ 50 ms, preview ≤ 200 ms.

    .venv/bin/python -m bench review_load [--rows 100000] [--duration 20] [--clients 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.examples_load import (
    corpus_texts,
    credentials,
    percentile,
    prepare_database,
    server_times,
    start_gunicorn,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench_review"
PROJECT_NAME = "bench-review-100k"
LABELS = ["HAM", "SPAM"]
DECISION_TARGET_MS = 50.0
PREVIEW_TARGET_MS = 200.0
CSRF = "benchcsrfsecret0123456789abcdefg"  # 32 characters: Django takes the unmasked secret
PREVIEW_WORDS = [
    "subscribe", "check out", "free", "song", "love", "channel", "money", "video", "call",
    "win", "please", "music", "click here", "the", "my channel", "prize", "text", "good",
]  # fmt: skip
PREVIEW_PATTERNS = [
    r"https?://\S+", r"\bsubscri\w*", r"(a+)+$", r"\d{3,}", r"check\s+(it|this)\s+out",
    r"[A-Z]{4,}", r"free\s+\w+", r"(?i)win(ner|ning)?",
]  # fmt: skip


# --- data -------------------------------------------------------------------------------------


def fill(*, project, rows: int, texts: list[str], seed: int = 0) -> float:
    """COPY ``rows`` examples (2% dev and 2% test with gold labels) into the project."""
    from django.db import connection

    rng = random.Random(seed)
    started = time.perf_counter()
    columns = "project_id, external_id, split, text, gold_label, label_source, label_version"
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY datasets_example ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                r = rng.random()
                split = "dev" if r < 0.02 else "test" if r < 0.04 else "pool"
                text = rng.choice(texts)
                gold = None
                if split != "pool":
                    gold = 1 if re.search(r"(?i)subscri|check|http|free|channel", text) else 0
                copy.write_row((project.pk, f"r{i}", split, text, gold, "", ""))
        cursor.execute("VACUUM ANALYZE datasets_example")
    return time.perf_counter() - started


def vocabulary(texts: list[str], size: int) -> list[str]:
    counts: dict[str, int] = {}
    for text in texts[:200_000]:
        for word in re.findall(r"[a-z]{3,15}", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    return [w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:size]]


def make_suggestions(*, project, count: int, texts: list[str], round_number: int) -> int:
    """``count`` suggested keyword rules (single words and word pairs) in one round."""
    from apps.datasets.models import Example
    from apps.rules.models import Rule, RuleOrigin, RuleStatus
    from apps.rules.services import describe, key_hash
    from models.prboost.propose import rule_key
    from models.prboost.rules import KeywordRule

    rng = random.Random(7)
    words = vocabulary(texts, 3000)
    sample_ids = list(
        Example.objects.filter(project=project, split="pool").values_list("id", flat=True)[:5000]
    )
    source_ids = list(
        Example.objects.filter(project=project, split="dev").values_list("id", "text")[:500]
    )
    seen: set[str] = set()
    rows = []
    while len(rows) < count:
        picked = (rng.choice(words),) if rng.random() < 0.3 else tuple(rng.sample(words, 2))
        rule = KeywordRule(words=picked, label=rng.randrange(2))
        key = rule_key(rule)
        if key in seen:
            continue
        seen.add(key)
        source_id, source_text = rng.choice(source_ids)
        score = rng.random() * 5
        rows.append(
            Rule(
                project=project,
                kind="keyword",
                definition=rule.to_dict(),
                key=key,
                key_hash=key_hash(key),
                label=rule.label,
                description=describe(rule, project),
                status=RuleStatus.SUGGESTED,
                origin=RuleOrigin.PROPOSED,
                round_number=round_number,
                evidence={
                    "source_example_id": source_id,
                    "source_text": source_text,
                    "answer_word": picked[0],
                    "sample_example_ids": rng.sample(sample_ids, 8),
                },
                stats={
                    "coverage": rng.random() * 0.05,
                    "pool_matches": rng.randrange(1, 5000),
                    "dev_precision": rng.random(),
                    "dev_matches": 10,
                    "dev_correct": rng.randrange(11),
                    "novelty": rng.random(),
                    "score": score,
                    "overlap": rng.random(),
                    "conflict": rng.random() * 0.2,
                },
                score=score,
            )
        )
    Rule.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def setup(*, rows: int, suggestions: int, clients: int, data_dir: Path, rebuild: bool):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.datasets.models import Example
    from apps.projects.models import Membership, Project, Role
    from apps.rules.models import Rule

    project = Project.objects.filter(name=PROJECT_NAME).first()
    texts = corpus_texts(data_dir)
    built = None
    if project is not None and (rebuild or Example.objects.filter(project=project).count() != rows):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM datasets_example WHERE project_id = %s", [project.pk])
        project.delete()
        project = None
    if project is None:
        project = Project.objects.create(name=PROJECT_NAME, labels=LABELS)
        print(f"filling {rows:,} examples ...", flush=True)
        built = fill(project=project, rows=rows, texts=texts)
    # A fresh round of suggestions every run (the previous run decided many of them).
    Rule.objects.filter(project=project).delete()
    made = make_suggestions(project=project, count=suggestions, texts=texts, round_number=1)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE rules_rule")
    user_model = get_user_model()
    users = []
    for i in range(clients):
        user, _ = user_model.objects.get_or_create(username=f"bench-reviewer-{i}")
        Membership.objects.get_or_create(
            project=project, user=user, defaults={"role": Role.ANNOTATOR}
        )
        users.append(user)
    return project, users, built, made


# --- load ---------------------------------------------------------------------------------------


def server_timing_ms(header: str | None) -> float | None:
    """The ``app`` duration of a ``Server-Timing`` header (apps/frugal/middleware.py)."""
    for part in (header or "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name == "app" and duration:
            return float(duration)
    return None


class Client:
    """One annotator on one keep-alive connection."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.server_ms: float | None = None  # the last response's Server-Timing ``app``

    def request(self, method: str, path: str, scenario: str, body=None, headers=None):
        all_headers = {**self.headers, **(headers or {}), "X-Bench-Scenario": scenario}
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            response = self.conn.getresponse()
            data = response.read()
            status = response.status
            self.server_ms = server_timing_ms(response.getheader("Server-Timing"))
        except OSError:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            data, status, self.server_ms = b"", 0, None
        return status, data, (time.perf_counter() - start) * 1000


def api_annotator(port, project_id, token, deadline, stats, lock, seed, tag=""):
    rng = random.Random(seed)
    client = Client(port, {"Authorization": f"Bearer {token}"})
    base = f"/api/v1/projects/{project_id}/rules/"
    json_headers = {"Content-Type": "application/json"}
    mine = {"decided": 0, "conflicts": 0, "errors": 0, "latency": []}
    while time.perf_counter() < deadline:
        status, data, _ = client.request("POST", base + "next/", "api: claim next" + tag)
        if status == 204:
            break
        if status != 200:
            mine["errors"] += 1
            continue
        rule = json.loads(data)
        payload = {
            "action": "accept" if rng.random() < 0.5 else "reject",
            "expected_version": rule["version"],
        }
        url = f"{base}{rule['id']}/decisions/"
        status, _, ms = client.request(
            "POST", url, "api: decide" + tag, body=json.dumps(payload), headers=json_headers
        )
        mine["latency"].append(ms)
        if status == 200:
            mine["decided"] += 1
        else:
            mine["errors"] += 1
            continue
        if rng.random() < 0.1:
            # A second decision on the version just decided (another tab, a second annotator):
            # refused with 409 and the message saying who decided it.
            payload["action"] = "reject" if payload["action"] == "accept" else "accept"
            status, _, _ = client.request(
                "POST",
                url,
                "api: decide (stale, 409)" + tag,
                body=json.dumps(payload),
                headers=json_headers,
            )
            if status == 409:
                mine["conflicts"] += 1
            else:
                mine["errors"] += 1
    with lock:
        for key in ("decided", "conflicts", "errors"):
            stats[key] += mine[key]
        stats["latency"].extend(mine["latency"])


def page_annotator(port, project_id, cookie, deadline, stats, lock, seed, tag=""):
    """The review screen over htmx: each POST decides and returns the next card."""
    rng = random.Random(seed)
    client = Client(port, {"Cookie": cookie, "X-CSRFToken": CSRF, "HX-Request": "true"})
    url = f"/projects/{project_id}/rules/review/"
    status, data, _ = client.request("GET", url, "page: review card (htmx)" + tag)
    mine = {"decided": 0, "conflicts": 0, "errors": 0, "latency": []}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    while time.perf_counter() < deadline and status == 200:
        found = re.search(
            rb'name="rule_id" value="(\d+)".*?name="version" value="(\d+)"', data, re.S
        )
        if not found:
            break
        body = urlencode(
            {
                "rule_id": found.group(1).decode(),
                "version": found.group(2).decode(),
                "action": "accept" if rng.random() < 0.5 else "reject",
            }
        )
        status, data, ms = client.request(
            "POST", url, "page: decide + next card (htmx)" + tag, body=body, headers=form
        )
        mine["latency"].append(ms)
        if status == 200:
            mine["decided"] += 1
            mine["conflicts"] += b"already" in data
        else:
            mine["errors"] += 1
    with lock:
        for key in ("decided", "conflicts", "errors"):
            stats[key] += mine[key]
        stats["latency"].extend(mine["latency"])


def run_annotators(target, *, port, project_id, secrets, duration, tag="") -> dict:
    stats = {"decided": 0, "conflicts": 0, "errors": 0, "latency": []}
    lock = threading.Lock()
    deadline = time.perf_counter() + duration
    threads = [
        threading.Thread(
            target=target, args=(port, project_id, secret, deadline, stats, lock, i, tag)
        )
        for i, secret in enumerate(secrets)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats["elapsed"] = time.perf_counter() - started
    stats["latency"].sort()
    return stats


def run_preview_typist(*, port, project_id, cookie, repeats: int) -> None:
    client = Client(port, {"Cookie": cookie, "HX-Request": "true"})
    base = f"/projects/{project_id}/rules/preview/"
    queries = [{"kind": "keyword", "words": w, "label": 1} for w in PREVIEW_WORDS]
    queries += [{"kind": "regex", "pattern": p, "label": 1} for p in PREVIEW_PATTERNS]
    for _ in range(repeats):
        for query in queries:
            client.request("GET", f"{base}?{urlencode(query)}", "page: live preview (htmx)")


def preview_in_process(project) -> dict[str, list[float]]:
    from apps.rules import services
    from models.prboost.rules import KeywordRule, RegexRule

    started = time.perf_counter()
    services.project_texts(project=project)
    services.project_texts(project=project).matcher.joined(False)
    load_s = time.perf_counter() - started
    out: dict[str, list[float]] = {"keyword": [], "regex": [], "load": [load_s * 1000]}
    for _ in range(3):
        for word in PREVIEW_WORDS:
            definition = KeywordRule(words=tuple(word.split(", ")), label=1).to_dict()
            t = time.perf_counter()
            services.preview_rule(project=project, definition=definition)
            out["keyword"].append((time.perf_counter() - t) * 1000)
        for pattern in PREVIEW_PATTERNS:
            definition = RegexRule(pattern=pattern, label=1).to_dict()
            t = time.perf_counter()
            services.preview_rule(project=project, definition=definition)
            out["regex"].append((time.perf_counter() - t) * 1000)
    for values in out.values():
        values.sort()
    return out


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench review_load", description=__doc__)
    parser.add_argument("--db-url", default=os.environ.get("FRUGAL_BENCH_REVIEW_DB", DEFAULT_DB))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--suggestions", type=int, default=20_000)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--clients", type=int, default=20, help="concurrent annotators (≤ 64)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per load scenario")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes"
    )
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    args.clients = max(1, min(args.clients, 64))

    prepare_database(args.db_url)
    from django.db import connections

    project, users, built, made = setup(
        rows=args.rows,
        suggestions=args.suggestions,
        clients=args.clients,
        data_dir=args.data_dir,
        rebuild=args.rebuild,
    )
    creds = [credentials(user, label="bench-review", csrf=CSRF) for user in users]
    print("measuring the preview in-process ...", flush=True)
    in_process = preview_in_process(project)
    connections.close_all()

    timing_dir = Path(tempfile.mkdtemp(prefix="frugal-bench-review-"))
    server = start_gunicorn(
        db_url=args.db_url, port=args.port, workers=args.workers, timing_dir=timing_dir
    )
    results = {}
    try:
        # Warm every worker's corpus cache (each process loads the 100,000 texts once).
        warm = Client(args.port, {"Cookie": creds[0][0], "HX-Request": "true"})
        for _ in range(args.workers * 3):
            warm.request(
                "GET",
                f"/projects/{project.pk}/rules/preview/?kind=keyword&words=warm&label=1",
                "warmup",
            )
            warm.conn.close()
            warm.conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        print("running 1 annotator alone on the API (the baseline) ...", flush=True)
        run_annotators(
            api_annotator,
            port=args.port,
            project_id=project.pk,
            secrets=[creds[0][1]],
            duration=max(3, args.duration // 3),
            tag=", 1 annotator",
        )
        print(f"running {args.clients} annotators on the API ...", flush=True)
        results["api"] = run_annotators(
            api_annotator,
            port=args.port,
            project_id=project.pk,
            secrets=[token for _, token in creds],
            duration=args.duration,
        )
        print(f"running {args.clients} annotators on the review screen ...", flush=True)
        results["page"] = run_annotators(
            page_annotator,
            port=args.port,
            project_id=project.pk,
            secrets=[cookie for cookie, _ in creds],
            duration=args.duration,
        )
        print("running the live preview (one typist) ...", flush=True)
        run_preview_typist(port=args.port, project_id=project.pk, cookie=creds[0][0], repeats=3)
    finally:
        stop(server)
    times, cpu_times = server_times(timing_dir)
    shutil.rmtree(timing_dir, ignore_errors=True)

    print()
    print(
        f"review_load: {args.rows:,} examples, {made:,} suggestions, {args.clients} annotators, "
        f"{args.workers} gunicorn workers, {os.cpu_count()} CPUs, {args.duration} s per "
        f"scenario, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if built:
        print(f"data build: {built:.0f} s")
    load = os.getloadavg()
    print(f"machine load average after the run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min)")
    for name, stats in results.items():
        print(
            f"{name}: {stats['decided']:,} decisions in {stats['elapsed']:.0f} s "
            f"({stats['decided'] / stats['elapsed']:.0f}/s), {stats['conflicts']} conflicts "
            f"told, {stats['errors']} errors; client p50 "
            f"{percentile(stats['latency'], 50):.1f} ms, "
            f"p95 {percentile(stats['latency'], 95):.1f} ms"
        )
    header = (
        f"| {'scenario':<34} | {'requests':>8} | {'server p50':>10} | {'server p95':>10} | "
        f"{'cpu p50':>10} | {'cpu p95':>10} | {'target':>8} | {'met':>3} |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    failed = 0
    targets = {
        "api: claim next, 1 annotator": None,
        "api: decide, 1 annotator": None,
        "api: decide": DECISION_TARGET_MS,
        "api: decide (stale, 409)": DECISION_TARGET_MS,
        "page: decide + next card (htmx)": None,
        "api: claim next": None,
        "page: live preview (htmx)": PREVIEW_TARGET_MS,
    }
    for name, target in targets.items():
        values = sorted(times.get(name, []))
        p50, p95 = percentile(values, 50), percentile(values, 95)
        cpu = sorted(cpu_times.get(name, []))
        ok = target is None or p95 <= target
        failed += not ok
        target_text = f"{target:.0f} ms" if target else "—"
        met = ("yes" if ok else "NO") if target else "—"
        print(
            f"| {name:<34} | {len(values):>8} | {p50:>7.1f} ms | {p95:>7.1f} ms | "
            f"{percentile(cpu, 50):>7.1f} ms | {percentile(cpu, 95):>7.1f} ms | "
            f"{target_text:>8} | {met:>3} |"
        )
    for kind in ("keyword", "regex"):
        values = in_process[kind]
        ok = percentile(values, 95) <= PREVIEW_TARGET_MS
        failed += not ok
        print(
            f"| {'preview_rule in-process: ' + kind:<34} | {len(values):>8} | "
            f"{percentile(values, 50):>7.1f} ms | {percentile(values, 95):>7.1f} ms | "
            f"{'':>10} | {'':>10} | {PREVIEW_TARGET_MS:>5.0f} ms | {'yes' if ok else 'NO':>3} |"
        )
    print(f"corpus cache load (first preview of a process): {in_process['load'][0]:.0f} ms")
    if results["api"]["latency"]:
        print(f"api decide client mean: {statistics.mean(results['api']['latency']):.1f} ms")
    return 0 if failed == 0 else 1
