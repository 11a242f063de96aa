"""``bench gpu_check``'s DORM and PTLoss paths run (on the CPU here) and report what they check;
on a machine without CUDA the run says so with a SKIP row instead of passing silently."""

from __future__ import annotations

import pytest

gpu_check = pytest.importorskip("bench.gpu_check")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-check")
    lm_dir, enc_dir = gpu_check.build_models(root)
    return root, enc_dir


@pytest.mark.slow
def test_dorm_reward_model_path_trains_and_scores_on_the_device(tiny):
    root, enc_dir = tiny
    rows = gpu_check.check_dorm(enc_dir, "cpu", root / "cache")
    assert [r.status for r in rows] == ["PASS"], rows
    assert rows[0].device == "cpu" and "params on cpu" in rows[0].result
    assert any((root / "cache" / "dorm-activations").rglob("*.npz"))  # the encoder pass cached


@pytest.mark.slow
def test_ptloss_distillation_path_trains_and_predicts_on_the_device(tiny):
    _, enc_dir = tiny
    rows = gpu_check.check_ptloss(enc_dir, "cpu")
    assert [r.status for r in rows] == ["PASS"], rows
    assert "held-out acc" in rows[0].result


def test_without_cuda_the_run_ends_with_a_skip_row(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []
    for name in ("check_causal_lm", "check_answers", "check_learner", "check_label_model",
                 "check_lorc", "check_dorm", "check_ptloss"):  # fmt: skip
        monkeypatch.setattr(gpu_check, name, lambda *a, name=name, **k: calls.append(name) or [])
    code = gpu_check.main(["--strict"])
    out = capsys.readouterr().out
    assert code == 1  # --strict: a skipped GPU leg fails the run
    assert "no CUDA device: skipped on the GPU" in out and "| SKIP" in out
    assert calls == ["check_causal_lm", "check_answers", "check_learner", "check_label_model",
                     "check_lorc", "check_dorm", "check_ptloss"]  # fmt: skip
    assert gpu_check.main([]) == 0  # without --strict the CPU run passes
