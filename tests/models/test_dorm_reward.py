"""DORM reward models and weights on a synthetic preference task where the truth is known:
a linear reward on features; 20% of the training pairs flipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.dorm.bilevel import RefineConfig, pair_features, refine_weights
from models.dorm.data import load_hh_rlhf, split_dialogue
from models.dorm.features import EncodedTexts
from models.dorm.pipeline import (
    DormConfig,
    compute_weights,
    default_reward_config,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)
from models.dorm.reward import PairData, accuracy
from models.dorm.stage1 import stage1_weights

D = 8


def synthetic(n_pairs: int = 400, seed: int = 0, flip: float = 0.2):
    """Texts are random feature vectors; the true reward is a fixed linear function."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * n_pairs, D)).astype(np.float32)
    true = rng.normal(size=D)
    r = x @ true
    a, b = np.arange(n_pairs), np.arange(n_pairs, 2 * n_pairs)
    chosen = np.where(r[a] > r[b], a, b)
    rejected = np.where(r[a] > r[b], b, a)
    enc = EncodedTexts(
        x,
        np.zeros((2 * n_pairs, 1, D), np.float16),
        np.ones((2 * n_pairs, 1), bool),
        "synthetic",
        1,
    )
    data = PairData(enc, chosen, rejected)
    train = np.arange(0, int(0.6 * n_pairs))
    val = np.arange(int(0.6 * n_pairs), int(0.75 * n_pairs))
    test = np.arange(int(0.75 * n_pairs), n_pairs)
    flips = rng.permutation(len(train))[: int(flip * len(train))]
    return data.flipped(train[flips]), train, val, test, flips


def test_head_reward_model_learns_the_linear_reward():
    data, train, val, test, _ = synthetic(flip=0.0)
    config = DormConfig(reward=default_reward_config("head"))
    model = train_reward_model(data, train, config)
    assert accuracy(model, data, test) > 0.85


def test_stage1_puts_flipped_pairs_low():
    data, train, val, test, flips = synthetic()
    s1 = stage1_weights(data, train, default_reward_config("head"), n_members=4)
    low = np.argsort(s1.weight)[: len(flips)]
    recall = len(set(low) & set(flips)) / len(flips)
    assert recall > 0.6  # random: 0.2
    assert np.all(np.isfinite(s1.weight)) and np.all((s1.weight > 0) & (s1.weight <= 1))


@pytest.mark.parametrize(
    "mode, method", [("features", "penalty"), ("free", "penalty"), ("features", "lookahead")]
)
def test_refinement_gives_finite_weights_and_never_loses_heldout_accuracy(mode, method):
    data, train, val, test, _ = synthetic()
    reward = default_reward_config("head")
    reward.epochs = 10
    s1 = stage1_weights(data, train, reward, n_members=3)
    feats = pair_features(s1, np.ones(len(train)), np.ones(len(train)))
    res = refine_weights(
        data,
        train,
        val,
        s1,
        reward,
        RefineConfig(weights=mode, method=method, iterations=10, eval_every=5),
        features=feats,
    )
    assert res.weight.shape == (len(train),)
    assert np.all(np.isfinite(res.weight)) and np.all((res.weight > 0) & (res.weight <= 1))
    assert res.curve[0]["iteration"] == 0
    kept = next(c for c in res.curve if c["iteration"] == res.best_iteration)
    assert kept["val_heldout_accuracy"] >= res.curve[0]["val_heldout_accuracy"]
    if res.best_iteration == 0:  # nothing beat stage 1: its weights, exactly
        assert np.array_equal(res.weight, s1.weight)


def test_weight_run_finds_flips_and_keeps_a_usable_reward_model():
    data, train, val, test, flips = synthetic(n_pairs=500, seed=1, flip=0.3)
    config = DormConfig(reward=default_reward_config("head"), n_members=4)
    config.refine.iterations = 10
    run = compute_weights(data, train, val, config)
    assert run.seconds > 0 and run.peak_mb > 0
    low = np.argsort(run.weight)[: len(flips)]
    assert len(set(low) & set(flips)) / len(flips) > 0.5  # random: 0.3
    uniform = accuracy(train_reward_model(data, train, config), data, test)
    weighted = accuracy(train_reward_model(data, train, config, weights=run.weight), data, test)
    # a linear Bradley-Terry model is robust to random flips (they shrink its margins, not its
    # direction), and down-weighting also drops hard clean pairs: weighting gains nothing here
    # (measured: 0.896 vs 0.920); it must not break the model
    assert weighted >= uniform - 0.05


def test_save_load_round_trip():
    data, train, *_ = synthetic(n_pairs=100, flip=0.0)
    config = DormConfig(reward=default_reward_config("head"))
    config.reward.epochs = 2
    model = train_reward_model(data, train, config)
    again, config2 = load_reward_model(save_reward_model(model, config))
    rows = np.arange(10)
    with torch.no_grad():
        assert torch.allclose(model(data, rows), again(data, rows))
    assert config2.reward.kind == "head"


def test_split_dialogue():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: Like this."
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: No."
    assert split_dialogue(c, r) == (
        "Human: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:",
        "Like this.",
        "No.",
    )
    # the responses may share a beginning: the cut is at the last shared assistant turn
    assert split_dialogue(c, c[: c.rfind(":") + 1] + " Like that.")[1:] == (
        "Like this.",
        "Like that.",
    )


def test_hh_rlhf_loads(data_dir):
    pairs = load_hh_rlhf(data_dir / "hh-rlhf-harmless")
    assert len(pairs) == 2312
    assert all(p.endswith("Assistant:") for p in pairs.prompts)


def test_encoder_outputs_with_and_without_activations(tmp_path):
    from models.dorm.features import encode_texts

    texts = ["Human: hi [SEP] Hello there.", "Human: hi [SEP] Go away."]
    full = encode_texts(texts, n_top=2, max_length=16, cache_dir=tmp_path, device="cpu")
    slim = encode_texts(
        texts, n_top=2, max_length=16, cache_dir=tmp_path, device="cpu", with_hidden=False
    )
    assert full.hidden.shape[:2] == (2, 16) and full.mask.sum() > 0
    assert slim.hidden.shape == (2, 0, full.pooled.shape[1])
    np.testing.assert_allclose(slim.pooled, full.pooled, atol=1e-5)
    again = encode_texts(texts, n_top=2, max_length=16, cache_dir=tmp_path, with_hidden=False)
    np.testing.assert_array_equal(again.pooled, slim.pooled)  # from the cache


def test_top_layers_on_cached_activations_reproduce_the_encoder(tmp_path):
    """The "top" reward model runs MiniLM's last layers on cached inputs exactly as the encoder
    does (attention mask included): pooled outputs match the encoder's own."""
    from models.dorm.features import encode_texts
    from models.dorm.reward import RewardConfig, build_reward_model

    texts = ["Human: how do I pick a lock? [SEP] I can't help with that.", "Human: hi [SEP] Hi!"]
    enc = encode_texts(texts, n_top=2, max_length=32, cache_dir=tmp_path, device="cpu")
    data = PairData(enc, np.array([0]), np.array([1]))
    model = build_reward_model(RewardConfig(kind="top"), enc.pooled.shape[1], n_top=2).eval()
    h, m = data.token_batch(np.array([0, 1]))
    ext = torch.zeros(m.shape).masked_fill(~m, torch.finfo(torch.float32).min)[:, None, None, :]
    with torch.no_grad():
        for layer in model.layers:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        mf = m.unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((h * mf).sum(1) / mf.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(pooled, enc.pooled, atol=2e-2)
    # and it trains: one epoch moves the margin of a pair it sees
    before = float(model(data, np.array([0])) - model(data, np.array([1])))
    from models.dorm.reward import fit

    fit(model, data, RewardConfig(kind="top", epochs=5, lr=1e-3, head_lr=1e-2, batch_size=1))
    after = float(model(data, np.array([0])) - model(data, np.array([1])))
    assert after > before
