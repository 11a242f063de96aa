"""PRBoost speed: 200 keyword + 20 regex rules on 1M documents (vs Snorkel's PandasLFApplier), and
Snorkel's LabelModel fit on a 1,000,000 x 200 sparse label matrix (time, peak memory, accuracy).

Run: ``python -m bench prboost_speed [--docs 1000000] [--snorkel-docs 100000] [--results FILE]``.
Threads are limited with threadpoolctl and ``torch.set_num_threads`` (1, then 2); the 2-thread
variant of rule matching runs ``apply_rules(..., n_jobs=2)`` (two forked processes). Wall times on a
shared machine depend on its load: the tables also give CPU seconds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.prboost.matching import Corpus, LabelMatrix, apply_rules
from models.prboost.rules import KeywordRule, RegexRule

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

REGEXES = [
    r"\bfree\b",
    r"\d{3,}",
    r"https?://\S+",
    r"\b(call|txt|text)\s+\w+",
    r"\?\s*$",
    r"\b[A-Z]{3,}\b",
    r"[$£€]\s?\d+",
    r"\bwho\b.*\?",
    r"\bhow (many|much)\b",
    r"!{2,}",
    r"\b(win|won|prize)\w*",
    r"www\.\w+",
    r"\bcheck (out|my)\b",
    r"\b\d+p\b",
    r"subscri",
    r"\bwhat (is|are|was)\b",
    r"\b(where|which) (is|was|are)\b",
    r"\bwhen (did|was|is)\b",
    r"\bcaused? by\b",
    r"\b(inside|into|from) the\b",
]


# ----------------------------------------------------------------------------- corpus and rules


def load_texts(data_dir: Path) -> list[str]:
    """All texts of the real corpora: WRENCH train splits, SMS Spam Collection, TREC train."""
    texts: list[str] = []
    for folder in sorted(data_dir.glob("wrench-*")):
        path = folder / "train.json"
        if path.is_file():
            rows = json.loads(path.read_text(encoding="utf-8"))
            texts += [row["data"]["text"] for row in rows.values()]
    sms = data_dir / "sms-spam-collection" / "SMSSpamCollection"
    if sms.is_file():
        for line in sms.read_text(encoding="utf-8", errors="replace").splitlines():
            _, _, text = line.partition("\t")
            if text:
                texts.append(text)
    trec = data_dir / "trec" / "train.json"
    if trec.is_file():
        for line in trec.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["sentence"])
    if not texts:
        raise SystemExit(f"no corpora found under {data_dir} (set --data-dir or FRUGAL_DATA_DIR)")
    return texts


def make_rules(texts: list[str], n_keyword: int, n_regex: int, seed: int) -> list:
    """Keyword rules from frequent corpus words and bigrams (so they really match) + regexes."""
    rng = np.random.default_rng(seed)
    words = collections.Counter()
    bigrams = collections.Counter()
    for text in texts:
        tokens = re.findall(r"[^\W\d_]{3,}", text.lower())
        words.update(tokens)
        bigrams.update(zip(tokens, tokens[1:]))
    pool = [w for w, _ in words.most_common(1010)[10:]]
    phrases = [f"{a} {b}" for (a, b), _ in bigrams.most_common(300)]
    rules: list = []
    for i in range(n_keyword):
        label = int(rng.integers(0, 2))
        kind = i % 10
        if kind < 7:  # 1-3 words, any of them
            chosen = rng.choice(pool, size=int(rng.integers(1, 4)), replace=False)
            rules.append(KeywordRule(tuple(chosen), label))
        elif kind < 9:  # a frequent phrase, maybe plus a word
            chosen = [str(rng.choice(phrases))] + list(
                rng.choice(pool, size=int(rng.integers(0, 2)))
            )
            rules.append(KeywordRule(tuple(chosen), label))
        else:  # two words that must both occur
            chosen = rng.choice(pool[:200], size=2, replace=False)
            rules.append(KeywordRule(tuple(chosen), label, mode="all"))
    rules += [RegexRule(p, i % 2) for i, p in enumerate(REGEXES[:n_regex])]
    return rules


def snorkel_lfs(rules: list) -> list:
    """The same rules as Snorkel labeling functions, written the usual way (Python ``re``)."""
    from snorkel.labeling import labeling_function

    lfs = []
    for i, rule in enumerate(rules):
        label = rule.label
        if isinstance(rule, KeywordRule):
            patterns = [
                re.compile(r"\b" + r"\s+".join(map(re.escape, w.split())) + r"\b", re.IGNORECASE)
                for w in rule.words
            ]
            if rule.mode == "all":

                def lf(x, patterns=patterns, label=label):
                    return label if all(p.search(x.text) for p in patterns) else -1

            else:
                joined = re.compile("|".join(f"(?:{p.pattern})" for p in patterns), re.IGNORECASE)

                def lf(x, joined=joined, label=label):
                    return label if joined.search(x.text) else -1

        else:
            flags = re.IGNORECASE if "i" in rule.flags else 0
            text = rule.pattern  # RE2's final $ is the very end; Python's allows a newline
            text = text[:-1] + r"\Z" if text.endswith("$") else text
            pattern = re.compile(text, flags)

            def lf(x, pattern=pattern, label=label):
                return label if pattern.search(x.text) else -1

        lfs.append(labeling_function(name=f"rule_{i}")(lf))
    return lfs


# ----------------------------------------------------------------------------- threads and memory


@contextlib.contextmanager
def limited_threads(n: int):
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with threadpool_limits(limits=n):
        yield
    torch.set_num_threads(before)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- label model child


def synthetic_label_matrix(n: int, m: int, k: int, seed: int) -> tuple[LabelMatrix, np.ndarray]:
    """Votes from a known generative model, conditionally independent given the class.

    Each rule has one label l_j (like a keyword rule), a coverage c_j ~ U(0.5%, 10%) and a precision
    a_j ~ U(0.55, 0.95): it fires on class l_j with P = c_j a_j / pi(l_j), on other classes with
    P = c_j (1 - a_j) / (1 - pi(l_j)); class prior pi ~ Dirichlet(5).
    """
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 5.0))
    y = rng.choice(k, size=n, p=prior)
    matches, labels = [], []
    for _ in range(m):
        label = int(rng.integers(0, k))
        cov, prec = rng.uniform(0.005, 0.10), rng.uniform(0.55, 0.95)
        p_in = min(1.0, cov * prec / prior[label])
        p_out = min(1.0, cov * (1 - prec) / (1 - prior[label]))
        fire = rng.random(n) < np.where(y == label, p_in, p_out)
        matches.append(np.flatnonzero(fire))
        labels.append(label)
    return LabelMatrix.from_matches(n, matches, labels), y


def label_model_child(args: argparse.Namespace) -> int:
    """Runs in its own process so that its peak memory is its own."""
    from models.prboost.label_models import MajorityVote, SnorkelLabelModel

    with limited_threads(args.threads):
        L, y = synthetic_label_matrix(args.lm_rows, args.lm_rules, args.lm_classes, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        dev = rng.choice(L.n, size=min(500, L.n), replace=False)  # a small gold dev set
        after_data = _peak_rss_mb()
        reset = _reset_peak()
        start = time.perf_counter()
        cpu_start = time.process_time()
        model = SnorkelLabelModel(torch_threads=args.threads).fit(
            L, args.lm_classes, y_dev=y[dev], seed=args.seed
        )
        fit_s = time.perf_counter() - start
        fit_cpu = time.process_time() - cpu_start
        fit_peak = _hwm_mb() if reset else float("nan")
        start = time.perf_counter()
        proba = model.predict_proba(L)
        predict_s = time.perf_counter() - start
        covered = L.covered()
        acc = float((proba.argmax(axis=1)[covered] == y[covered]).mean())
        mv = MajorityVote().fit(L, args.lm_classes).predict_proba(L)
        mv_acc = float((mv.argmax(axis=1)[covered] == y[covered]).mean())
    print(
        json.dumps(
            {
                "threads": args.threads,
                "n": L.n,
                "m": L.m,
                "votes": L.nnz,
                "coverage": float(covered.mean()),
                "fit_s": fit_s,
                "fit_cpu_s": fit_cpu,
                "predict_s": predict_s,
                "accuracy": acc,
                "majority_accuracy": mv_acc,
                "data_peak_mb": after_data,
                "fit_peak_mb": fit_peak,
                "process_peak_mb": _peak_rss_mb(),
            }
        )
    )
    return 0


def run_label_model(args: argparse.Namespace, threads: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "prboost_speed",
        "--lm-child",
        "--threads",
        str(threads),
        "--lm-rows",
        str(args.lm_rows),
        "--lm-rules",
        str(args.lm_rules),
        "--lm-classes",
        str(args.lm_classes),
        "--seed",
        str(args.seed),
    ]
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"label model child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the forked matching workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_apply(
    rules: list, corpus: Corpus, n_jobs: int = 1
) -> tuple[float, dict[str, float], LabelMatrix]:
    marks: dict[str, float] = {}
    start = time.perf_counter()
    cpu_start = _cpu_seconds()

    def progress(fraction: float, message: str) -> None:
        if message.endswith("rules matched") and " " in message:
            marks[message.split()[0]] = time.perf_counter() - start

    L = apply_rules(rules, corpus, progress=progress, n_jobs=n_jobs)
    total = time.perf_counter() - start
    phases = {"cpu": _cpu_seconds() - cpu_start, "keyword": marks.get("keyword", float("nan"))}
    phases["regex"] = marks.get("regex", float("nan")) - phases["keyword"]
    return total, phases, L


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench prboost_speed", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--snorkel-docs", type=int, default=100_000)
    parser.add_argument("--keyword-rules", type=int, default=200)
    parser.add_argument("--regex-rules", type=int, default=20)
    parser.add_argument("--lm-rows", type=int, default=1_000_000)
    parser.add_argument("--lm-rules", type=int, default=200)
    parser.add_argument("--lm-classes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="(label model child only)")
    parser.add_argument("--thread-variants", default="1,2")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of the 1M apply per variant; best is kept"
    )
    parser.add_argument("--skip-snorkel", action="store_true")
    parser.add_argument("--skip-label-model", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=None, help="also write a markdown file")
    parser.add_argument("--lm-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lm_child:
        return label_model_child(args)

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data_dir = args.data_dir or Path(os.environ.get("FRUGAL_DATA_DIR") or DEFAULT_DATA)
    variants = [int(t) for t in args.thread_variants.split(",") if t]
    base = load_texts(data_dir)
    rng = np.random.default_rng(args.seed)
    texts = [base[i] for i in rng.integers(0, len(base), size=args.docs)]
    rules = make_rules(base, args.keyword_rules, args.regex_rules, args.seed)
    n_kw = sum(isinstance(r, KeywordRule) for r in rules)
    n_re = len(rules) - n_kw
    chars = sum(map(len, texts))
    print(
        f"corpus: {len(texts):,} documents sampled from {len(base):,} real texts "
        f"({chars / 1e6:.0f}M characters); rules: {n_kw} keyword + {n_re} regex",
        flush=True,
    )

    rows: list[tuple[str, str, str, str, str]] = []
    notes: list[str] = []
    corpus = Corpus(texts)
    apply_times = {}
    for threads in variants:
        with limited_threads(threads):
            runs = [_timed_apply(rules, corpus, n_jobs=threads) for _ in range(args.repeat)]
        total, phases, L = min(runs, key=lambda r: r[0])  # best of N: least disturbed run
        apply_times[threads] = total
        rows.append(
            (
                f"apply {n_kw} keyword + {n_re} regex rules, {len(texts):,} docs",
                f"{threads}" + (" (processes)" if threads > 1 else ""),
                f"{total:.1f} s (CPU {phases['cpu']:.1f} s)",
                "<= 30 s",
                "pass" if total <= 30 else "FAIL",
            )
        )
        notes.append(
            f"{threads} thread(s), best of {len(runs)}: keywords {phases['keyword']:.1f} s, "
            f"regexes {phases['regex']:.1f} s, {L.nnz:,} votes, "
            f"{L.covered().mean():.1%} of docs covered"
        )
        print(rows[-1], notes[-1], flush=True)

    if not args.skip_snorkel:
        import pandas as pd
        from snorkel.labeling import PandasLFApplier

        sub = texts[: args.snorkel_docs]
        with limited_threads(1):
            start, cpu = time.perf_counter(), time.process_time()
            ours = apply_rules(rules, Corpus(sub))
            ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
            applier = PandasLFApplier(snorkel_lfs(rules))
            frame = pd.DataFrame({"text": sub})
            start, cpu = time.perf_counter(), time.process_time()
            theirs = applier.apply(frame, progress_bar=False)
            theirs_s, theirs_cpu = time.perf_counter() - start, time.process_time() - cpu
        agree = float((ours.to_dense() == theirs).mean())
        ratio = theirs_s / ours_s
        rows.append(
            (
                f"same rules, {len(sub):,} docs: Snorkel PandasLFApplier {theirs_s:.1f} s "
                f"vs ours {ours_s:.2f} s",
                "1",
                f"{ratio:.0f}x",
                ">= 50x",
                "pass" if ratio >= 50 else "FAIL",
            )
        )
        notes.append(
            f"Snorkel vs ours on {len(sub):,} docs: wall {theirs_s:.1f} s vs {ours_s:.2f} s, CPU "
            f"{theirs_cpu:.1f} s vs {ours_cpu:.2f} s ({theirs_cpu / ours_cpu:.0f}x); the two label "
            f"matrices agree on {agree:.4%} of cells (any difference comes from Unicode "
            "normalization, whitespace inside phrases, or RE2 vs Python re)"
        )
        print(rows[-1], notes[-1], flush=True)

    if not args.skip_label_model:
        for threads in variants:
            res = run_label_model(args, threads)
            size = f"{res['n']:,} x {res['m']}"
            rows.append(
                (
                    f"LabelModel fit, {size} ({res['votes']:,} votes)",
                    str(threads),
                    f"{res['fit_s']:.1f} s (CPU {res['fit_cpu_s']:.1f} s)",
                    "<= 60 s",
                    "pass" if res["fit_s"] <= 60 else "FAIL",
                )
            )
            rows.append(
                (
                    "LabelModel peak memory (whole process / during fit)",
                    str(threads),
                    f"{res['process_peak_mb']:.0f} / {res['fit_peak_mb']:.0f} MB",
                    "<= 2048 MB",
                    "pass" if res["process_peak_mb"] <= 2048 else "FAIL",
                )
            )
            notes.append(
                f"{threads} thread(s): predict_proba {res['predict_s']:.1f} s; accuracy vs the "
                f"generating labels on covered rows ({res['coverage']:.1%}): LabelModel "
                f"{res['accuracy']:.4f}, majority vote {res['majority_accuracy']:.4f}; memory "
                f"after building the matrix {res['data_peak_mb']:.0f} MB"
            )
            print(rows[-1], notes[-1], flush=True)

    table = ["| benchmark | threads | result | target | |", "|---|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"machine: {machine}; load average {load_start:.1f} at the start, {load:.1f} at the end; "
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    cores = os.cpu_count() or 1
    if max(load_start, load) > cores:
        notes.append(
            f"the machine was shared (load average above its {cores} cores): wall times include "
            "waiting for a core; CPU seconds are what the work itself costs, and on an idle "
            "machine the single-process wall time is close to them"
        )
    print()
    print(header)
    print("\n".join(table))
    for note in notes:
        print(f"- {note}")
    if args.results:
        args.results.write_text(
            "# PRBoost speed benchmark\n\n"
            f"Command: `python -m bench prboost_speed {' '.join(argv)}`\n\n"
            f"{header}\n\n" + "\n".join(table) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n",
            encoding="utf-8",
        )
    return 0
