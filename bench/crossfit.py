"""Cross-fitted dev predictions of the finalized PRBoost model: honest vs in-sample dev accuracy.

Finalize writes predictions to dev rows (issue 14). The final model trains on every dev label, so
its own dev accuracy is in-sample; ``PRBoostLoop.crossfit_dev_proba`` predicts each dev fold with
a model that never saw the fold. This runs a few rounds with the simulated annotator on a WRENCH
set, finalizes, and prints: the in-sample dev accuracy (the baseline a leaky version would write),
the cross-fitted dev accuracy, test accuracy (which neither saw), and what cross-fitting costs.

    python -m bench crossfit [--sets wrench-youtube,wrench-sms] [--rounds 3] [--seeds 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench._report import machine, markdown_table


def run(data_dir: Path, name: str, rounds: int, seed: int) -> list[object]:
    from models.data import load_wrench
    from models.lm import embed_texts
    from models.prboost.learners import text_features
    from models.prboost.loop import LoopConfig, LoopData, PRBoostLoop
    from models.prboost.matching import Corpus
    from models.prboost.propose import NgramProposer
    from models.prboost.simulate import SimulatedAnnotator

    folder = data_dir / name
    pool, _ = load_wrench(folder, "train")
    dev, _ = load_wrench(folder, "valid")
    test, _ = load_wrench(folder, "test")
    pool_X, dev_X, test_X = (text_features(d, embed=embed_texts) for d in (pool, dev, test))
    data = LoopData(
        dev=dev,
        pool_X=pool_X,
        dev_X=dev_X,
        pool_corpus=Corpus.from_dataset(pool),
        dev_corpus=Corpus.from_dataset(dev),
        proposer=NgramProposer(),
    )
    K = len(dev.label_names)
    loop = PRBoostLoop(LoopConfig(n_classes=K, seed=seed, C=10.0), n_dev=len(dev))
    annotator = SimulatedAnnotator(pool.labels)
    for _ in range(rounds):
        loop.run_round(data)
        loop.judge(annotator.review([r.candidate for r in loop.pending[:10]]))
        loop.skip_pending()
    t0 = time.perf_counter()
    final = loop.finalize(data)
    finalize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    crossfit = loop.crossfit_dev_proba(data)
    crossfit_s = time.perf_counter() - t0
    in_sample = float(np.mean(final.predict_proba(dev_X).argmax(1) == dev.labels))
    honest = float(np.mean(crossfit.argmax(1) == dev.labels))
    test_acc = float(np.mean(final.predict_proba(test_X).argmax(1) == test.labels))
    return [
        name,
        seed,
        len(dev),
        f"{in_sample:.3f}",
        f"{honest:.3f}",
        f"{test_acc:.3f}",
        f"{abs(in_sample - test_acc):.3f}",
        f"{abs(honest - test_acc):.3f}",
        f"{finalize_s:.1f}",
        f"{crossfit_s:.1f}",
    ]


def main(argv: list[str]) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench crossfit")
    parser.add_argument("--sets", default="wrench-youtube")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data_dir = Path(os.environ.get("FRUGAL_DATA_DIR", "../shared/data"))
    rows = [
        run(data_dir, name, args.rounds, int(seed))
        for name in args.sets.split(",")
        for seed in args.seeds.split(",")
    ]
    print(f"machine: {machine()}; {args.rounds} rounds, simulated annotator, head end model")
    print(
        markdown_table(
            [
                "set",
                "seed",
                "dev",
                "dev acc in-sample (baseline)",
                "dev acc cross-fitted",
                "test acc",
                "gap in-sample to test",
                "gap cross-fitted to test",
                "finalize s",
                "cross-fit s",
            ],
            rows,
        )
    )
    return 0
