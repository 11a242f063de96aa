"""End to end on wrench-youtube: a few PRBoost rounds with the simulated annotator improve test
accuracy over round 0 (the dev-only model). Slow: embeds ~2,000 texts on the first run."""

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def test_prboost_rounds_improve_test_accuracy_over_round_zero(data_dir, tmp_path):
    import torch

    from models.data import load_wrench
    from models.lm import embed_texts
    from models.prboost.learners import text_features
    from models.prboost.loop import LoopConfig, LoopData, PRBoostLoop
    from models.prboost.matching import Corpus
    from models.prboost.propose import NgramProposer
    from models.prboost.simulate import SimulatedAnnotator

    torch.set_num_threads(1)
    pool, _ = load_wrench(data_dir / "wrench-youtube", "train")
    dev, _ = load_wrench(data_dir / "wrench-youtube", "valid")
    test, _ = load_wrench(data_dir / "wrench-youtube", "test")
    pool_X, dev_X, test_X = (text_features(d, embed=embed_texts) for d in (pool, dev, test))
    data = LoopData(
        dev=dev,
        pool_X=pool_X,
        dev_X=dev_X,
        pool_corpus=Corpus.from_dataset(pool),
        dev_corpus=Corpus.from_dataset(dev),
        proposer=NgramProposer(),
    )
    loop = PRBoostLoop(LoopConfig(n_classes=2, seed=0), n_dev=len(dev))
    annotator = SimulatedAnnotator(pool.labels)
    accuracy = []
    for t in range(5):
        loop.run_round(data)
        accuracy.append(float(np.mean(loop.predict_proba(test_X).argmax(1) == test.labels)))
        loop.judge(annotator.review([r.candidate for r in loop.pending[:10]]))
        loop.skip_pending()
        if t == 2:  # a worker would persist between rounds: continue from the saved state
            loop.save(tmp_path)
            loop = PRBoostLoop.load(tmp_path)
    final = loop.finalize(data)
    final_accuracy = float(np.mean(final.model.predict(test_X) == test.labels))
    assert loop.summary()["accepted"] >= 5
    assert final_accuracy > accuracy[0], (accuracy, final_accuracy)
