"""bench prboost's protocol checks and the renderer that writes the RESULTS / BENCHMARKS rows."""

from __future__ import annotations

import json

import pytest

from bench import prboost, prboost_render


def _wrench(folder, weak: bool):
    folder.mkdir(parents=True)
    (folder / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    for split in ("train", "valid", "test"):
        rows = {
            str(i): {"data": {"text": f"text {i}"}, "label": i % 2}
            | ({"weak_labels": [i % 2, -1]} if weak else {})
            for i in range(6)
        }
        (folder / f"{split}.json").write_text(json.dumps(rows))


@pytest.mark.parametrize("row", [2, 3, 5])
def test_rule_rows_on_a_set_without_rules_say_so(tmp_path, capsys, row):
    _wrench(tmp_path / "plain", weak=False)
    code = prboost.main(["--dataset", "plain", "--rows", f"1,{row}", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "plain has no rules" in capsys.readouterr().out


def test_sets_with_rules_pass_the_check(tmp_path):
    _wrench(tmp_path / "ruled", weak=True)
    prboost.check_rows(tmp_path, "ruled", [2, 3, 5])  # no exception


def _run(metric: float, rounds: int = 3, alpha: float = 0.5) -> dict:
    return {
        "metric": metric,
        "ensemble_metric": metric,
        "reviewed": 30,
        "accepted": 12,
        "round_seconds": 1.0,
        "finalize_seconds": 2.0,
        "precision_corr": 0.7,
        "mean_real_precision": 0.65,
        "rounds": [
            {
                "round": t,
                "alpha": 2.0 if t == 0 else alpha,
                "ensemble_dev": 0.8 + 0.01 * t,
                "ensemble_test": metric - 0.01 * (rounds - t),
                "n_candidates": 10,
            }
            for t in range(rounds)
        ],
    }


def test_render_computes_targets_from_the_json(tmp_path):
    rows = {
        "1": [_run(0.80)],
        "3": [_run(0.70)],
        "6": [_run(0.90)],
        "7": [_run(0.81)],
        "4": [_run(0.86)],
        "5": [_run(0.84)],
    }
    meta = {
        "machine": "x",
        "python": "3",
        "date": "d",
        "seeds": [0],
        "rounds": 3,
        "per_round": 10,
        "proposer": "ngram",
        "features": "auto",
        "config": {},
        "command": "python -m bench prboost --dataset wrench-trec",
    }
    path = tmp_path / "r.json"
    data = {"wrench-trec": {"features": "minilm", "features_cv": {"minilm": 0.7}, "rows": rows}}
    path.write_text(json.dumps({"meta": meta, "sets": data}))
    bm = tmp_path / "BENCHMARKS.md"
    bm.write_text(f"before\n{prboost_render.BEGIN}\nold\n{prboost_render.END}\nafter\n")
    results = tmp_path / "R.md"
    code = prboost_render.main(
        [str(path), "--results", str(results), "--benchmarks", str(bm), "--plots", str(tmp_path)]
    )
    assert code == 0
    text = results.read_text()
    assert "+5.0" in text  # row 4 − row 7
    assert "trec 86.0 ≥ 85.0" in text  # half the gap from max(80, 70) to 90
    assert "**86.0** ✓" in text
    block = bm.read_text()
    assert block.startswith("before\n") and block.endswith("after\n") and "\nold\n" not in block
    assert "+5.0" in block
