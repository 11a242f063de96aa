"""Rule preview cost on 1,000,000 short examples with adversarial patterns (issue 13 item 1).

Builds (once; ``--rebuild`` to redo) a PostgreSQL project of ``--rows`` synthetic short rows
(a few words and a number each, 2% dev with gold labels, 2% test) with ``COPY``, then times
``apps.rules.services.preview_rule`` (what the write-a-rule page, the review edit form and the
API preview call) in this process for each pattern: the live preview (``exact=False``) and the
recount a save does (``exact=True``), ``--repeats`` times each after one warm-up, under the
caps of the settings (``FRUGAL_PREVIEW_MAX_SECONDS``, ``FRUGAL_PREVIEW_MAX_BYTES``). The
baseline beside them, in the same run: the same matcher with no caps and no sample (what one
uncapped exact count costs) for the patterns that show the difference. Target: p95 ≤ 1 s.

    .venv/bin/python -m bench preview_bounds [--rows 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/frugal_bench_preview_ops"
PROJECT_NAME = "bench-preview-bounds"
LABELS = ["HAM", "SPAM"]
WORDS = [
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
    "click",
    "text",
    "prize",
    "phone",
    "friend",
    "music",
    "home",
    "work",
    "new",
    "please",
    "reply",
    "stop",
]
TARGET_P95_S = 1.0
RESULTS_JSON = ROOT / "bench" / "results" / "preview_bounds.json"
RESULTS_MD = ROOT / "bench" / "RESULTS-preview_bounds.md"


def patterns() -> list[tuple[str, dict]]:
    """(name, rule definition): the adversarial patterns of issue 13 and plain ones."""
    many = "|".join(f"w{i:03d}" for i in range(98)) + "|prize"  # 496 characters (cap 500)

    def regex(pattern: str, flags: str = "i") -> dict:
        return {"kind": "regex", "pattern": pattern, "flags": flags, "label": 1}

    return [
        ("(?s).*9  (the 120 s one)", regex("(?s).*9")),
        ("(?s).*zq  (no hit, runs over)", regex("(?s).*zq")),
        (".*.*.*  (every row)", regex(".*.*.*")),
        (r"[\s\S]*  (every row)", regex(r"[\s\S]*")),
        (r"[\s\S]*prize[\s\S]*win", regex(r"[\s\S]*prize[\s\S]*win")),
        ("99-word alternation (496 chars)", regex(many)),
        ("^free  (anchored, 1 in 25)", regex("^free")),
        (r"\d+  (every row)", regex(r"\d+")),
        ("no row: zzqqzz", regex("zzqqzz")),
        ("long literal (500 chars)", regex("free " * 99 + "fre")),
        ("plain: free\\s+prize", regex(r"free\s+prize")),
        ("keyword: free", {"kind": "keyword", "words": ["free"], "label": 1}),
        (
            "keyword: 100 words (the cap)",
            {"kind": "keyword", "words": [*WORDS, *(f"kw{i}" for i in range(76))], "label": 1},
        ),
    ]


BASELINE = {"(?s).*9  (the 120 s one)", "^free  (anchored, 1 in 25)", ".*.*.*  (every row)"}


def prepare(db_url: str):
    from bench.examples_load import prepare_database

    prepare_database(db_url)


def fill(project, rows: int, seed: int = 0) -> float:
    from django.db import connection

    rng = random.Random(seed)
    started = time.perf_counter()
    columns = "project_id, external_id, split, text, gold_label, label_source, label_version, votes"
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY datasets_example ({columns}) FROM STDIN") as copy,
    ):
        for i in range(rows):
            r = rng.random()
            split = "dev" if r < 0.02 else "test" if r < 0.04 else "pool"
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
            text = f"{words} {rng.randint(0, 99999)}"
            gold = rng.randrange(2) if split == "dev" else None
            copy.write_row((project.pk, f"p{i}", split, text, gold, "", "", "{}"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE datasets_example")
    return time.perf_counter() - started


def setup_project(rows: int, rebuild: bool):
    from django.db import connection

    from apps.datasets.models import Example
    from apps.projects.models import Project

    project = Project.objects.filter(name=PROJECT_NAME).first()
    if project is not None and (rebuild or Example.objects.filter(project=project).count() != rows):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM datasets_example WHERE project_id = %s", [project.pk])
        project.delete()
        project = None
    if project is None:
        project = Project.objects.create(name=PROJECT_NAME, labels=LABELS)
        print(f"filling {rows:,} examples ...", flush=True)
        seconds = fill(project, rows)
        print(f"  done in {seconds:.0f} s", flush=True)
    return project


def run(rows: int, repeats: int, rebuild: bool, db_url: str) -> dict:
    prepare(db_url)
    from django.conf import settings

    from apps.rules.corpus import project_texts
    from apps.rules.services import preview_rule
    from models.prboost.rules import rule_from_dict

    project = setup_project(rows, rebuild)
    started = time.perf_counter()
    texts = project_texts(project=project)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    texts.matcher.joined_bytes()
    texts.matcher.joined(False)
    join_s = time.perf_counter() - started
    out_rows = []
    for name, definition in patterns():
        for exact in (False, True):
            preview_rule(project=project, definition=definition, exact=exact)  # warm-up
            times, last = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                last = preview_rule(project=project, definition=definition, exact=exact)
                times.append(time.perf_counter() - t0)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            baseline = None
            if exact and name in BASELINE:
                rule = rule_from_dict(definition)
                t0 = time.perf_counter()
                found = texts.matcher.match_bounded(rule).matched
                baseline = {"seconds": time.perf_counter() - t0, "matches": int(found.size)}
            out_rows.append(
                {
                    "pattern": name,
                    "mode": "save (exact)" if exact else "live",
                    "p50_s": statistics.median(times),
                    "p95_s": p95,
                    "max_s": times[-1],
                    "pool_matches": last.pool_matches,
                    "estimated": last.estimated,
                    "looked_at": last.looked_at,
                    "stopped_after": last.stopped_after,
                    "error": last.error,
                    "uncapped": baseline,
                }
            )
            print(format_row(out_rows[-1]), flush=True)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg": os.getloadavg(),
        "rows": rows,
        "repeats": repeats,
        "texts_load_s": load_s,
        "join_s": join_s,
        "max_seconds": settings.FRUGAL_PREVIEW_MAX_SECONDS,
        "max_bytes": settings.FRUGAL_PREVIEW_MAX_BYTES,
        "rows_out": out_rows,
    }


HEADER = (
    "| pattern | mode | p50 | p95 | max | pool matches | how counted | p95 ≤ 1 s | "
    "uncapped exact count |\n|---|---|---|---|---|---|---|---|---|"
)


def how(row: dict) -> str:
    if row["error"]:
        return f"error: {row['error'][:40]}"
    if row["stopped_after"] is not None:
        return f"stopped after {row['stopped_after']:,}"
    if row["estimated"]:
        return f"≈ from {row['looked_at']:,} texts"
    return "exact"


def format_row(row: dict) -> str:
    base = row["uncapped"]
    uncapped = f"{base['seconds']:.2f} s ({base['matches']:,})" if base else ""
    return (
        f"| {row['pattern']} | {row['mode']} | {row['p50_s']:.3f} s | {row['p95_s']:.3f} s | "
        f"{row['max_s']:.3f} s | {row['pool_matches']:,} | {how(row)} | "
        f"{'yes' if row['p95_s'] <= TARGET_P95_S else 'NO'} | {uncapped} |"
    )


def render(result: dict) -> str:
    worst = max(r["p95_s"] for r in result["rows_out"])
    lines = [
        "# Rule preview cost on 1,000,000 short rows — `bench/preview_bounds.py`",
        "",
        "Generated from `bench/results/preview_bounds.json` by the bench. Each pattern is timed",
        "through `preview_rule` (counts per split, dev precision from PostgreSQL, highlighted",
        "samples) in one process, after one warm-up; *live* is what typing, the review edit",
        "form and the API preview run, *save (exact)* what saving a rule runs. *Uncapped exact",
        "count*: the same matcher with no cap and no sample, in the same run (the baseline).",
        "",
        f"{result['rows']:,} rows, {result['repeats']} runs per row, {result['machine']}, "
        f"{result['date']}, load average {result['load_avg'][0]:.1f}; caps "
        f"{result['max_seconds']} s and {result['max_bytes'] >> 20} MiB per request. "
        f"Texts read from PostgreSQL once per process: {result['texts_load_s']:.1f} s, joined "
        f"forms built once: {result['join_s']:.1f} s (not in the rows).",
        "",
        HEADER,
        *[format_row(r) for r in result["rows_out"]],
        "",
        f"Worst p95: {worst:.3f} s (target ≤ {TARGET_P95_S:.0f} s: "
        f"{'met' if worst <= TARGET_P95_S else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench preview_bounds")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--render-only", action="store_true", help="re-render the Markdown")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not args.render_only:
        result = run(args.rows, args.repeats, args.rebuild, args.db)
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(result, indent=2))
    result = json.loads(RESULTS_JSON.read_text())
    text = render(result)
    RESULTS_MD.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
