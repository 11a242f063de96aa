"""LoRC on tiny random Llama/Qwen2/Mistral models: exactness, the latent cache, memory, files."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.lorc import (
    BudgetError,
    LatentCache,
    QuantSpec,
    Schedule,
    cache_nbytes,
    calibrate,
    compress,
    factorize,
    full_schedule,
    greedy,
    kv_layout,
    load,
    new_cache,
    perplexity,
    progressive,
    quant_kv_cache,
    replaced_weights,
    save,
    uniform,
)
from tests.models.lorc_fixtures import FAMILIES, VOCAB, calib_batches, tiny_lm

ATOL_FULL = 1e-4  # float32 logits of a full-rank LoRC model vs the original (observed ~1e-6)


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    model = tiny_lm(request.param)
    factors = factorize(model, calibrate(model, calib_batches()))
    return request.param, model, factors


def _ids(b: int = 3, t: int = 20, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (b, t), generator=g)


def _left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :6], mask[1, :2] = 0, 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


@torch.no_grad()
def test_full_rank_reproduces_the_original_logits(family_model):
    _, model, factors = family_model
    small = compress(model, factors, full_schedule(kv_layout(model)))
    ids, mask = _left_padded()
    ref = model(input_ids=ids, attention_mask=mask).logits
    got = small(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert (ref - got)[real].abs().max() < ATOL_FULL


@torch.no_grad()
def test_plain_svd_full_rank_is_exact_too(family_model):
    _, model, _ = family_model
    plain = factorize(model, None)
    small = compress(model, plain, full_schedule(kv_layout(model)))
    ids = _ids()
    assert (model(ids).logits - small(ids).logits).abs().max() < ATOL_FULL


@torch.no_grad()
def test_compress_leaves_the_original_model_untouched(family_model):
    _, model, factors = family_model
    ids = _ids()
    before = model(ids).logits
    compress(model, factors, Schedule([8] * 3, [8] * 3))
    assert torch.equal(model(ids).logits, before)


@torch.no_grad()
def test_low_rank_latents_match_the_replaced_weights_model(family_model):
    _, model, factors = family_model
    sched = Schedule([8, 4, 16], [4, 8, 12])
    small, ref = compress(model, factors, sched), replaced_weights(model, factors, sched)
    ids, mask = _left_padded()
    diff = (
        ref(input_ids=ids, attention_mask=mask).logits
        - small(input_ids=ids, attention_mask=mask).logits
    )
    assert diff[mask.bool()].abs().max() < ATOL_FULL


@torch.no_grad()
def test_latent_cache_generates_what_the_replaced_weights_model_generates(family_model):
    _, model, factors = family_model
    sched = Schedule([8, 4, 16], [4, 8, 12])
    small, ref = compress(model, factors, sched), replaced_weights(model, factors, sched)
    ids, mask = _left_padded()
    kw = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    out_ref = ref.generate(input_ids=ids, attention_mask=mask, **kw)
    out = small.generate(input_ids=ids, attention_mask=mask, **kw)  # LatentCache made by generate
    assert torch.equal(out, out_ref)
    cache = new_cache(small)
    out2 = small.generate(input_ids=ids, attention_mask=mask, cache=cache, **kw)
    assert torch.equal(out2, out_ref)
    assert isinstance(cache, LatentCache) and cache.get_seq_length() == out.shape[1] - 1


@torch.no_grad()
def test_step_by_step_decoding_equals_one_forward(family_model):
    _, model, factors = family_model
    small = compress(model, factors, Schedule([8, 8, 8], [8, 8, 8]), QuantSpec(bits=8, group=4))
    ids = _ids(2, 12)
    whole = small(ids).logits  # no cache: latents fake-quantized the same way
    cache = new_cache(small)
    small(ids[:, :7], cache=cache, use_cache=True)
    steps = [small(ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(7, 12)]
    assert (torch.cat(steps, 1) - whole[:, 7:]).abs().max() < 1e-4


@torch.no_grad()
@pytest.mark.parametrize("bits", [None, 8, 4])
def test_cache_memory_shrinks_by_the_stated_ratio(bits):
    model = tiny_lm("llama", layers=3)
    factors = factorize(model, calibrate(model, calib_batches()))
    spec = QuantSpec(bits, group=8)
    layout = kv_layout(model, spec)
    sched = greedy(layout, factors, budget=0.5 * layout.full_bytes, unit=4)
    small = compress(model, factors, sched, spec)
    ids = _ids(4, 30)
    full_cache = model(ids, use_cache=True).cache  # the model's own DynamicCache
    lat_cache = new_cache(small)
    small(ids, cache=lat_cache, use_cache=True)
    tokens = ids.numel()
    assert cache_nbytes(full_cache) == tokens * layout.full_bytes  # measured == geometry
    assert cache_nbytes(lat_cache) == tokens * layout.bytes_per_token(sched)
    assert cache_nbytes(lat_cache) <= 0.5 * cache_nbytes(full_cache)


@torch.no_grad()
def test_batches_with_left_padding_match_rows_run_alone(family_model):
    _, model, factors = family_model
    small = compress(model, factors, Schedule([8, 8, 8], [8, 8, 8]))
    ids, mask = _left_padded()
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    batch = small.generate(input_ids=ids, attention_mask=mask, **kw)
    for row in range(ids.shape[0]):
        real = ids[row][mask[row].bool()][None]
        alone = small.generate(input_ids=real, attention_mask=torch.ones_like(real), **kw)
        assert torch.equal(batch[row, -6:], alone[0, -6:])


@torch.no_grad()
def test_crop_and_beam_search_keep_positions_in_step():
    model = tiny_lm("llama")
    factors = factorize(model, calibrate(model, calib_batches()))
    small = compress(model, factors, Schedule([8] * 3, [8] * 3))
    ids = _ids(2, 10)
    cache = new_cache(small)
    small(ids, cache=cache, use_cache=True)
    cache.crop(-3)
    assert cache.get_seq_length() == 7 and cache.positions.shape == (2, 7)
    out = small.generate(
        input_ids=ids, max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0
    )
    assert out.shape == (2, 14)


@torch.no_grad()
def test_quantized_kv_baseline_cache_costs_what_it_says():
    model = tiny_lm("mistral")
    ids = _ids(2, 16)
    cache = quant_kv_cache(model, QuantSpec(bits=8))
    model(ids, cache=cache, use_cache=True)
    head_dim, n_kv, layers = 8, 2, 3
    per_token = 2 * layers * n_kv * (head_dim + 2)  # int8 codes + one fp16 scale per head
    assert cache_nbytes(cache) == ids.numel() * per_token


def test_perplexity_of_the_full_rank_model_equals_the_original():
    model = tiny_lm("qwen2")
    factors = factorize(model, calibrate(model, calib_batches()))
    small = compress(model, factors, full_schedule(kv_layout(model)))
    w = _ids(2, 24)
    assert perplexity(small, w) == pytest.approx(perplexity(model, w), rel=1e-4)


def test_bare_forward_of_a_compressed_model_rejects_a_dynamic_cache():
    from transformers import DynamicCache

    model = tiny_lm("llama")
    factors = factorize(model, calibrate(model, calib_batches()))
    small = compress(model, factors, Schedule([8] * 3, [8] * 3))
    with pytest.raises(TypeError, match="LatentCache"):
        small(_ids(), cache=DynamicCache(), use_cache=True)


@torch.no_grad()
def test_save_and_load_round_trip(tmp_path):
    model = tiny_lm("qwen2")
    factors = factorize(model, calibrate(model, calib_batches()))
    spec = QuantSpec(bits=8, group=4)
    layout = kv_layout(model, spec)
    sched = progressive(layout, factors, 0.4 * layout.full_bytes, unit=4)
    small = compress(model, factors, sched, spec)
    path = save(tmp_path / "lorc.pt", factors, sched, spec, meta={"note": "x"})
    again = load(path, model)
    ids = _ids()
    assert torch.equal(small(ids).logits, again(ids).logits)
    assert again.lorc["schedule"].ranks_k == sched.ranks_k
    other = tiny_lm("llama", layers=2)
    with pytest.raises(ValueError, match="another model"):
        load(path, other)


def test_schedules_fit_the_budget_and_differ():
    model = tiny_lm("llama", layers=3)
    factors = factorize(model, calibrate(model, calib_batches()))
    layout = kv_layout(model, QuantSpec(bits=8, group=4))
    budget = 0.3 * layout.full_bytes
    for s in (
        uniform(layout, budget, unit=4),
        progressive(layout, factors, budget, unit=4),
        greedy(layout, factors, budget, unit=4),
    ):
        assert layout.bytes_per_token(s) <= budget
    with pytest.raises(BudgetError):
        greedy(layout, factors, 10, unit=4)


@torch.no_grad()
def test_proposer_answers_run_on_the_compressed_model(tmp_path):
    """The PRBoost LM pass (shared-prefix path with cache crops) works on a compressed CausalLM
    and gives the same answers as the uncompressed one at full rank."""
    import numpy as np

    from models.lm import CausalLM
    from models.lorc.serve import compressed_causal_lm

    class Tok:  # whitespace tokenizer over the tiny model's ids
        eos_token, pad_token, truncation_side, padding_side = "<e>", "<p>", "left", "left"

        def __call__(self, texts, return_tensors="pt", padding=False, **kw):
            single = isinstance(texts, str)
            rows = [[3 + (sum(map(ord, w)) % (VOCAB - 3)) for w in t.split()] for t in
                    ([texts] if single else texts)]  # fmt: skip
            width = max(len(r) for r in rows)
            ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            return {"input_ids": ids, "attention_mask": mask}

    model = tiny_lm("llama")
    factors = factorize(model, calibrate(model, calib_batches()))
    layout = kv_layout(model)
    path = save(tmp_path / "lorc.pt", factors, full_schedule(layout), QuantSpec())
    lm = CausalLM(model, Tok(), "tiny", "cpu")
    small = compressed_causal_lm(lm, path)
    assert small.model_id != lm.model_id and small.model is not lm.model

    class Vocab:
        token_ids = np.arange(3, VOCAB)
        token_word = np.arange(VOCAB - 3)
        words = [f"w{i}" for i in range(VOCAB - 3)]

    prefixes = ["a b c d", "e f", "g h i"]
    suffixes = ["\nx y", "\nz"]
    ref = lm.next_token_topk_suffixes(prefixes, suffixes, 5, Vocab())
    got = small.next_token_topk_suffixes(prefixes, suffixes, 5, Vocab())
    for (ri, _), (gi, _) in zip(ref, got):
        assert np.array_equal(ri, gi)


def test_a_compressed_copy_shares_the_untouched_weights():
    model = tiny_lm("llama")
    factors = factorize(model, calibrate(model, calib_batches()))
    small = compress(model, factors, Schedule([8] * 3, [8] * 3))
    assert small.lm_head.weight is model.lm_head.weight
    assert small.model.layers[0].mlp.up_proj.weight is model.model.layers[0].mlp.up_proj.weight
    assert not hasattr(model.model.layers[0].self_attn, "k_down")
    assert model.config.use_cache and not small.config.use_cache


def test_a_model_compressed_under_inference_mode_also_generates_outside_it():
    model = tiny_lm("mistral")
    with torch.inference_mode():
        factors = factorize(model, calibrate(model, calib_batches()))
        small = compress(model, factors, Schedule([8] * 3, [8] * 3), QuantSpec(8, group=4))
        small(_ids())
    out = small.generate(input_ids=_ids(), max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (3, 23)


@torch.no_grad()
def test_query_blocks_give_the_same_attention(monkeypatch):
    from models.lorc import attention

    model = tiny_lm("qwen2")
    factors = factorize(model, calibrate(model, calib_batches()))
    small = compress(model, factors, Schedule([8] * 3, [8] * 3))
    ids, mask = _left_padded()
    whole = small(input_ids=ids, attention_mask=mask).logits
    monkeypatch.setattr(attention, "ATTN_BLOCK_SCORES", 6 * 20 * 3)  # 3-query blocks
    blocked = small(input_ids=ids, attention_mask=mask).logits
    assert (whole - blocked)[mask.bool()].abs().max() < 1e-5


# --------------------------------------------------------------------------- chunked attention
@pytest.fixture(scope="module")
def qwen2_pair():
    model = tiny_lm("qwen2")  # biases on k/v: the hardest case for the folds
    factors = factorize(model, calibrate(model, calib_batches()))
    sched = Schedule([8, 4, 16], [4, 8, 12])
    return model, factors, sched, compress(model, factors, sched)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key_chunk=st.integers(1, 25),
    scores=st.integers(1, 400),
    split=st.integers(1, 19),
    full_rank=st.booleans(),
)
@torch.no_grad()
def test_chunked_attention_through_the_cache_is_exact(
    monkeypatch, qwen2_pair, key_chunk, scores, split, full_rank
):
    """Any key chunk / score block size, any prefill split, left padding: the latent model read
    through its cache gives the logits of the replaced-weights model (at full rank: the original
    model's)."""
    from models.lorc import attention

    model, factors, sched, small = qwen2_pair
    if full_rank:
        small = compress(model, factors, full_schedule(kv_layout(model)))
        ref = model
    else:
        ref = replaced_weights(model, factors, sched)
    ids, mask = _left_padded()
    want = ref(input_ids=ids, attention_mask=mask).logits
    monkeypatch.setattr(attention, "KEY_CHUNK", key_chunk)
    monkeypatch.setattr(attention, "ATTN_BLOCK_SCORES", scores)
    cache = new_cache(small)
    first = small(input_ids=ids[:, :split], attention_mask=mask[:, :split], cache=cache)
    rest = small(input_ids=ids[:, split:], attention_mask=mask, cache=cache)
    got = torch.cat([first.logits, rest.logits], 1)
    assert (want - got)[mask.bool()].abs().max() < ATOL_FULL


@torch.no_grad()
def test_keys_of_the_whole_context_never_exist_at_once(monkeypatch, qwen2_pair):
    """Prefill and decode read the cache KEY_CHUNK tokens at a time: the key rebuild (k_up) never
    sees more tokens than that, and the generated tokens are the same as with one chunk."""
    from models.lorc import attention

    model, factors, sched, small = qwen2_pair
    ids, mask = _left_padded()
    kw = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    whole = small.generate(input_ids=ids, attention_mask=mask, **kw)
    monkeypatch.setattr(attention, "KEY_CHUNK", 5)
    seen = []
    hooks = [
        layer.self_attn.k_up.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[-2]))
        for layer in small.model.layers
    ]
    try:
        chunked = small.generate(input_ids=ids, attention_mask=mask, **kw)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(chunked, whole)
    assert torch.equal(
        chunked,
        replaced_weights(model, factors, sched).generate(input_ids=ids, attention_mask=mask, **kw),
    )
    assert max(seen) == 5 and ids.shape[1] + kw["max_new_tokens"] > 5
