"""Tiny random Llama / Qwen2 / Mistral causal LMs (GQA, rotary) for the LoRC tests, in float32."""

from __future__ import annotations

import torch

FAMILIES = ("llama", "qwen2", "mistral")
VOCAB = 101


def tiny_lm(family: str, seed: int = 0, layers: int = 3):
    """A random 3-layer model of ``family``: 6 query heads, 2 KV heads of 8 dims (kv_dim 16)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    cfg_cls, model_cls = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),  # q/k/v projections with bias
        "mistral": (MistralConfig, MistralForCausalLM),
    }[family]
    cfg = cfg_cls(
        vocab_size=VOCAB,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    if family == "qwen2":  # random init leaves biases at zero: make them matter
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    return model


def calib_batches(n: int = 4, t: int = 24, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, t), generator=g)
    return [(ids, torch.ones_like(ids))]
