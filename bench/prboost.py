"""PRBoost quality on WRENCH sets: dev-only, rules + MV / LabelModel, PRBoost, gold (issues 3, 9).

Usage: python -m bench prboost --dataset wrench-trec [--dataset ...] [--rows 1,2,3,4,5,6,7]
       [--seeds 0,1,2] [--rounds 10] [--per-round 10] [--proposer ngram|prompt|mixed]
       [--features minilm|tfidf|auto|HUB-NAME] [--data-dir DIR] [--cache-dir DIR] [--json OUT]

Pool = train with labels hidden, dev = valid, test = test (wrench-trec test's leaking first word is
stripped by ``load_wrench``). Rows, all with the same end model (``--features``: frozen encoder
embeddings, entity-aware for relation sets, or TF-IDF; + logistic regression C=10):
  1 supervised on dev only             2 hand-written rules -> majority vote -> end model
  3 same rules -> Snorkel LabelModel   4 PRBoost from no rules, simulated annotator
  5 PRBoost seeded with the hand rules 6 supervised on the gold pool + dev (upper bound)
  7 PRBoost from no rules, an annotator that rejects every rule (same loop, same finalize):
    row 4 - row 7 is what the reviewed rules contribute.
Rows 2/3 train on the rule-covered pool only (the WRENCH pipeline) with the label model's soft
labels; the LabelModel uses Snorkel's default uniform class balance. PRBoost's final model trains
on the dev gold labels plus confident pseudo-labels. Metric: accuracy; spam-class F1 for wrench-sms.
wrench-sms: the valid/test weak_labels do not belong to their texts, so the seeded run (row 5) uses
the train votes for the pool and treats the seed rules' dev votes as unknown.
``--features auto`` picks the end model's features per set by 5-fold cross-validation inside the
dev set (dev-only logistic regression), never on test.
The JSON (``--json``) holds every number; ``python -m bench prboost_render`` writes the RESULTS
files and the BENCHMARKS.md rows from it, with a per-round plot per set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROW_NAMES = {
    1: "dev only",
    2: "rules + MV",
    3: "rules + LabelModel",
    4: "PRBoost, no rules",
    5: "PRBoost, seeded",
    6: "gold pool + dev",
    7: "reject every rule",
}
FEATURE_CHOICES = ("minilm", "tfidf")
END_MODEL_C = 10.0


def _threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)


@dataclass
class Bundle:
    """One data set, ready: datasets, votes, features, corpora."""

    name: str
    pool: object  # TextDataset (gold labels kept here for the simulator and row 6 only)
    dev: object
    test: object
    pool_votes: np.ndarray  # (n_pool, m)
    dev_votes: np.ndarray | None  # (n_dev, m) or None when unusable (wrench-sms)
    pool_X: np.ndarray
    dev_X: np.ndarray
    test_X: np.ndarray
    pool_emb: np.ndarray  # sentence embeddings (for corpora / similarity terms)
    dev_emb: np.ndarray
    embed_seconds: float
    features: str = "minilm"
    features_cv: dict | None = None  # dev cross-validated accuracy per choice (--features auto)

    @property
    def n_classes(self) -> int:
        return self.dev.n_classes

    def metric(self, pred: np.ndarray) -> float:
        y = self.test.labels
        if self.name.endswith("sms"):
            tp = np.sum((pred == 1) & (y == 1))
            fp = np.sum((pred == 1) & (y != 1))
            fn = np.sum((pred != 1) & (y == 1))
            return float(2 * tp / max(2 * tp + fp + fn, 1))
        return float(np.mean(pred == y))


class BenchError(SystemExit):
    """A benchmark that cannot run as asked; the message says why."""


def load_bundle(
    data_dir: Path, name: str, cache_dir: Path | None, limit: int | None, features: str = "minilm"
) -> Bundle:
    from models.data import load_wrench
    from models.lm import embed_texts
    from models.prboost.learners import TfidfFeatures, cv_accuracy, text_features

    folder = data_dir / name
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such data set folder")
    pool, pool_votes = load_wrench(folder, "train")
    dev, dev_votes = load_wrench(folder, "valid")
    test, _ = load_wrench(folder, "test")
    if limit is not None and limit < len(pool):
        rows = np.random.default_rng(0).permutation(len(pool))[:limit]
        rows.sort()
        pool, pool_votes = pool.subset(rows), pool_votes[rows]

    def embedder(encoder):
        def embed(texts):
            return embed_texts(list(texts), encoder=encoder, cache_dir=cache_dir)

        return embed

    def featurize(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if kind == "tfidf":
            tf = TfidfFeatures().fit(pool, dev)
            return tf.transform(pool), tf.transform(dev), tf.transform(test)
        embed = embedder(None if kind == "minilm" else kind)
        return tuple(text_features(d, embed=embed) for d in (pool, dev, test))

    t0 = time.perf_counter()
    choice_cv: dict[str, float] = {}
    if features == "auto":  # chosen inside dev by cross-validation, never on test
        feats = {kind: featurize(kind) for kind in FEATURE_CHOICES}
        for kind, (_, dev_X, _) in feats.items():
            choice_cv[kind] = cv_accuracy(
                dev_X, dev.labels, lambda: end_model(dev.n_classes), folds=5, seed=0
            )
        features = max(FEATURE_CHOICES, key=lambda k: (choice_cv[k], k == "minilm"))
        pool_X, dev_X, test_X = feats[features]
    else:
        pool_X, dev_X, test_X = featurize(features)
    embed = embedder(None)
    pool_emb = embed(pool.texts)
    dev_emb = embed(dev.texts)
    return Bundle(
        name=name,
        pool=pool,
        dev=dev,
        test=test,
        pool_votes=pool_votes,
        dev_votes=None if name.endswith("sms") else dev_votes,
        pool_X=pool_X,
        dev_X=dev_X,
        test_X=test_X,
        pool_emb=pool_emb,
        dev_emb=dev_emb,
        embed_seconds=time.perf_counter() - t0,
        features=features,
        features_cv=choice_cv,
    )


def has_rules(b: Bundle) -> bool:
    """True when the set comes with hand-written rules (weak labels with some votes)."""
    return _votes_present(b.pool_votes)


def check_rows(data_dir: Path, name: str, rows: list[int]) -> None:
    """Refuse rows 2, 3 and 5 on a set without hand-written rules, with a message that says so."""
    from models.data import DataError, load_wrench

    folder = data_dir / name
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such data set folder")
    try:
        _, votes = load_wrench(folder, "train")
    except DataError as exc:
        raise BenchError(f"{name}: {exc}") from None
    for row in rows:
        if row in (2, 3, 5) and not _votes_present(votes):
            raise BenchError(
                f"{name} has no rules (no weak labels in its train.json): row {row} "
                f"({ROW_NAMES[row]}) needs the set's hand-written rules; leave it out of --rows"
            )


def _votes_present(votes: np.ndarray) -> bool:
    return votes.ndim == 2 and votes.shape[1] > 0 and bool(np.any(votes >= 0))


def require_rules(b: Bundle, row: int) -> None:
    if not has_rules(b):
        raise BenchError(
            f"{b.name} has no rules (no weak labels in its train.json): row {row} "
            f"({ROW_NAMES[row]}) needs the set's hand-written rules; leave it out of --rows"
        )


def end_model(n_classes: int, seed: int = 0):
    from models.prboost.learners import EmbeddingClassifier

    return EmbeddingClassifier(n_classes=n_classes, C=END_MODEL_C, seed=seed)


# --------------------------------------------------------------------------- rows 1, 2, 3, 6
def row_supervised(b: Bundle, X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    model = end_model(b.n_classes, seed).fit(X, y)
    return {"metric": b.metric(model.predict(b.test_X))}


def row_rules(b: Bundle, label_model: str, seed: int) -> dict:
    from models.prboost.label_models import make_label_model
    from models.prboost.matching import LabelMatrix

    require_rules(b, 2 if label_model == "majority" else 3)

    L = LabelMatrix.from_dense(b.pool_votes)
    L_dev = None if b.dev_votes is None else LabelMatrix.from_dense(b.dev_votes)
    lm = make_label_model(label_model).fit(L, b.n_classes, L_dev=L_dev, y_dev=None, seed=seed)
    covered = np.flatnonzero(L.covered())
    soft = lm.predict_proba(L.rows(covered))
    model = end_model(b.n_classes, seed).fit(b.pool_X[covered], soft)
    return {"metric": b.metric(model.predict(b.test_X)), "covered": int(covered.size)}


# --------------------------------------------------------------------------- PRBoost rows
@dataclass
class LMContext:
    pool_corpus: object
    dev_corpus: object
    proposer: object
    lm_seconds: float
    lm_examples: int


def prepare_lm(b: Bundle, kind: str, cache_dir: Path | None, n_templates: int = 1) -> LMContext:
    """The one-time LM pass (answer index over dev + pool) and the proposer."""
    from models.prboost.matching import Corpus

    t0 = time.perf_counter()
    index_dev = index_pool = None
    n_lm = 0
    if kind in ("prompt", "mixed"):
        from models.lm import load_causal_lm
        from models.prboost.answers import compute_answer_index
        from models.prboost.templates import DEFAULT_TEMPLATES

        lm = load_causal_lm()
        templates = DEFAULT_TEMPLATES[b.dev.task_type][:n_templates]
        index_dev = compute_answer_index(
            lm, b.dev.texts, templates, entities=b.dev.entities, cache_dir=cache_dir
        )
        index_pool = compute_answer_index(
            lm, b.pool.texts, templates, entities=b.pool.entities, cache_dir=cache_dir
        )
        n_lm = (len(b.dev) + len(b.pool)) * len(templates)
    lm_seconds = time.perf_counter() - t0
    pool_corpus = Corpus.from_dataset(
        b.pool, embeddings=b.pool_emb, answer_index=index_pool, anchor_embeddings=b.dev_emb
    )
    dev_corpus = Corpus.from_dataset(b.dev, embeddings=b.dev_emb, answer_index=index_dev)
    proposer = make_proposer(kind, templates if kind in ("prompt", "mixed") else None)
    return LMContext(pool_corpus, dev_corpus, proposer, lm_seconds, n_lm)


def make_proposer(kind: str, templates=None):
    from models.prboost import propose

    if kind == "prompt":
        return propose.PromptProposer(templates=templates)
    if kind == "ngram":
        return propose.NgramProposer()
    if kind == "mixed":
        return propose.CombinedProposer(
            [propose.PromptProposer(templates=templates), propose.NgramProposer()]
        )
    raise SystemExit(f"unknown proposer {kind!r} (prompt, ngram or mixed)")


def row_prboost(
    b: Bundle,
    ctx: LMContext,
    seeded: bool,
    seed: int,
    rounds: int,
    per_round: int,
    config: dict,
    reject_all: bool = False,
) -> dict:
    """Rows 4, 5 and 7: the loop with a simulated annotator (accepts at ≥ 0.6 pool precision), or
    one that rejects every candidate (``reject_all``, row 7); the same finalize."""
    from models.prboost.loop import LoopConfig, LoopData, PRBoostLoop
    from models.prboost.matching import LabelMatrix
    from models.prboost.simulate import SimulatedAnnotator

    if seeded:
        require_rules(b, 5)
    seed_pool = LabelMatrix.from_dense(b.pool_votes) if seeded else None
    seed_dev = None
    if seeded and b.dev_votes is not None:
        seed_dev = LabelMatrix.from_dense(b.dev_votes)
    data = LoopData(
        dev=b.dev,
        pool_X=b.pool_X,
        dev_X=b.dev_X,
        pool_corpus=ctx.pool_corpus,
        dev_corpus=ctx.dev_corpus,
        proposer=ctx.proposer,
        seed_pool_votes=seed_pool,
        seed_dev_votes=seed_dev,
    )
    cfg = LoopConfig(
        n_classes=b.n_classes, seed=seed, candidates_per_round=per_round, C=END_MODEL_C, **config
    )
    loop = PRBoostLoop(cfg, n_dev=len(b.dev), n_seed_votes=seed_pool.m if seeded else 0)
    annotator = SimulatedAnnotator(b.pool.labels, threshold=0.6)
    history = []
    for _ in range(rounds):
        record = loop.run_round(data)
        shown = loop.pending[: cfg.candidates_per_round]
        cands = [r.candidate for r in shown]
        real = [annotator.precision(c.matches, c.rule.label) for c in cands]
        decisions = [False] * len(cands) if reject_all else [p >= annotator.threshold for p in real]
        loop.judge(decisions)
        loop.skip_pending()
        history.append(
            {
                "round": record["round"],
                "alpha": record["alpha"],
                "err": record["err"],
                "member_dev": record["member_dev_accuracy"],
                "ensemble_dev": record["ensemble_dev_accuracy"],
                "ensemble_test": b.metric(loop.predict_proba(b.test_X).argmax(1)),
                "covered": record["covered"],
                "n_candidates": record["n_candidates"],
                "n_instances": record.get("n_instances", 0),
                "accepted": int(sum(decisions)),
                "seconds": record["seconds"],
                # estimated vs real (hidden gold) pool precision of the shown candidates
                "est_precision": [float(c.dev_precision) for c in cands],
                "real_precision": real,
            }
        )
    t0 = time.perf_counter()
    final = loop.finalize(data)
    finalize_s = time.perf_counter() - t0
    summary = loop.summary()
    est = [x for r in history for x in r["est_precision"]]
    real = [x for r in history for x in r["real_precision"]]
    corr = float(np.corrcoef(est, real)[0, 1]) if len(est) > 2 and np.std(est) > 0 else None
    return {
        "metric": b.metric(final.model.predict(b.test_X)),
        "ensemble_metric": b.metric(loop.predict_proba(b.test_X).argmax(1)),
        "rounds": history,
        "reviewed": summary["reviewed"],
        "accepted": summary["accepted"],
        "round_seconds": float(np.mean([r["seconds"] for r in history])) if history else 0.0,
        "finalize_seconds": finalize_s,
        "kept": int(final.kept.size),
        "precision_corr": corr,
        "mean_real_precision": float(np.mean(real)) if real else None,
        "accepted_rules": [
            r.final_rule.describe(b.dev.label_names)
            for r in loop.reviews
            if r.decision in ("accepted", "edited")
        ],
    }


# --------------------------------------------------------------------------- main
def _fmt(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def default_data_dir() -> Path:
    """``$FRUGAL_DATA_DIR``, else ``shared/data`` beside the repository (as the settings do)."""
    env = os.environ.get("FRUGAL_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def run_row(b: Bundle, ctx, row: int, seed: int, args, config: dict) -> dict:
    if row == 1:
        return row_supervised(b, b.dev_X, b.dev.labels, seed)
    if row == 6:  # the upper bound sees everything PRBoost sees, with the pool's gold labels
        from models.prboost.learners import stack_rows

        X = stack_rows(b.pool_X, b.dev_X)
        y = np.concatenate([b.pool.labels, b.dev.labels])
        return row_supervised(b, X, y, seed)
    if row in (2, 3):
        return row_rules(b, "majority" if row == 2 else "snorkel", seed)
    return row_prboost(
        b, ctx, row == 5, seed, args.rounds, args.per_round, config, reject_all=row == 7
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench prboost", description=__doc__)
    parser.add_argument("--dataset", action="append", required=True)
    parser.add_argument("--rows", default="1,2,3,4,5,6,7")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--proposer", default="ngram", choices=["prompt", "ngram", "mixed"])
    parser.add_argument(
        "--features", default="minilm", help="minilm, tfidf, auto (dev CV) or a hub encoder name"
    )
    parser.add_argument(
        "--templates", type=int, default=1, help="how many default templates the LM pass uses"
    )
    parser.add_argument("--pool-limit", type=int, default=None, help="subsample the pool")
    parser.add_argument("--data-dir", default=None, help="default: $FRUGAL_DATA_DIR")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--config", default="{}", help="LoopConfig overrides as JSON")
    parser.add_argument("--json", default=None, help="write all results to this file")
    args = parser.parse_args(argv)
    _threads()
    rows = [int(r) for r in args.rows.split(",")]
    bad = [r for r in rows if r not in ROW_NAMES]
    if bad:
        print(f"unknown rows {bad}: rows are {sorted(ROW_NAMES)}")
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    config = json.loads(args.config)
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if not data_dir.is_dir():
        print(f"data folder {data_dir} not found (set FRUGAL_DATA_DIR or --data-dir)")
        return 2
    results: dict = {
        "meta": {
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seeds": seeds,
            "rounds": args.rounds,
            "per_round": args.per_round,
            "proposer": args.proposer,
            "features": args.features,
            "config": config,
            "command": "python -m bench prboost " + " ".join(argv),
        },
        "sets": {},
    }
    lines = []
    try:
        for name in args.dataset:
            check_rows(data_dir, name, rows)  # fail before any long step
            b = load_bundle(data_dir, name, cache_dir, args.pool_limit, args.features)
            print(
                f"{name}: pool {len(b.pool)}, dev {len(b.dev)}, test {len(b.test)}, "
                f"features {b.features} {b.pool_X.shape[1]} ({b.embed_seconds:.1f}s)",
                flush=True,
            )
            out = results["sets"].setdefault(
                name, {"features": b.features, "features_cv": b.features_cv, "rows": {}}
            )
            ctx = None
            if any(r in rows for r in (4, 5, 7)):
                ctx = prepare_lm(b, args.proposer, cache_dir, args.templates)
                rate = ctx.lm_examples / ctx.lm_seconds if ctx.lm_seconds > 0 else float("nan")
                out["lm_pass"] = {
                    "prompts": ctx.lm_examples,
                    "seconds": ctx.lm_seconds,
                    "prompts_per_s": rate,
                }
            for row in rows:
                runs = []
                for seed in seeds:
                    r = run_row(b, ctx, row, seed, args, config)
                    runs.append(r)
                    print(f"  row {row} seed {seed}: {100 * r['metric']:.1f}", flush=True)
                out["rows"][str(row)] = runs
                extra = ""
                if row in (4, 5, 7):
                    extra = (
                        f" | reviewed {np.mean([r['reviewed'] for r in runs]):.0f}"
                        f" accepted {np.mean([r['accepted'] for r in runs]):.1f}"
                        f" | ensemble {_fmt([r['ensemble_metric'] for r in runs])}"
                    )
                metric = _fmt([r["metric"] for r in runs])
                lines.append(f"| {name} | {row} {ROW_NAMES[row]} | {metric}{extra} |")
                if args.json:  # after every row, so a long run keeps what it has
                    Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    except BenchError as exc:
        print(exc.code)
        return 2
    print()
    print(f"machine: {results['meta']['machine']}, python {results['meta']['python']}")
    print(f"date: {results['meta']['date']}, seeds {seeds}")
    print("| set | row | metric (%) |")
    print("|---|---|---|")
    for line in lines:
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0
