"""LoRC on the real SmolLM2-135M-Instruct (slow: loads the GGUF, ~1 min on one CPU thread)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

TEXT = (
    "Human: What is a good way to learn to cook? Assistant: Start with a few simple recipes, "
    "cook them several times, and taste as you go. Human: Which recipes? Assistant: Eggs, rice, "
    "a soup and a stir-fry teach most of the basic skills: heat, timing and seasoning. "
)


@pytest.fixture(scope="module")
def smollm2():
    from models.lm import ModelLoadError, load_causal_lm

    try:
        lm = load_causal_lm(device="cpu", dtype="float32")
    except ModelLoadError as exc:
        pytest.skip(str(exc))
    return lm


@torch.no_grad()
def test_smollm2_full_rank_exact_and_int8_cache_saves_what_it_says(smollm2):
    from models.lorc import (
        QuantSpec,
        cache_nbytes,
        calibrate,
        compress,
        factorize,
        full_schedule,
        greedy,
        kv_layout,
        new_cache,
    )

    model, tok = smollm2.model, smollm2.tokenizer
    ids = tok(TEXT * 4, return_tensors="pt")["input_ids"][:, :256]  # (1, 256)
    factors = factorize(model, calibrate(model, [(ids, torch.ones_like(ids))]))
    layout = kv_layout(model)
    assert (layout.n_layers, layout.kv_dim) == (30, 192)
    full = compress(model, factors, full_schedule(layout))
    probe = ids[:, :64]
    diff = (full(probe).logits - model(probe).logits).abs().max().item()
    assert diff < 2e-2  # float32, 30 layers: observed ~1e-3

    spec = QuantSpec(8)
    layout8 = kv_layout(model, spec)
    small = compress(model, factors, greedy(layout8, factors, 0.4 * layout8.full_bytes), spec)
    cache = new_cache(small)
    out = small.generate(input_ids=probe, max_new_tokens=8, do_sample=False, cache=cache)
    ref = small(out[:, :-1]).logits.argmax(-1)[:, 63:]  # one forward, no cache
    assert torch.equal(out[:, 64:], ref)
    assert cache_nbytes(cache) / cache.get_seq_length() <= 0.4 * layout8.full_bytes
