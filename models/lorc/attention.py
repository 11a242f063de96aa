"""``LoRCAttention``: a drop-in ``self_attn`` that caches low-rank latents instead of K and V.

For one layer with H query heads, h_kv key/value heads of size d_h (n_rep = H / h_kv):

    c_k = x·A_k            (B, T, r_k)   cached
    c_v = x·A_v            (B, T, r_v)   cached
    k   = rope(c_k·B_k + b_k)            keys rebuilt BEFORE the rotary embedding, every step
    z_h = softmax(q_h·k_gᵀ/√d_h)·c_v     (B, T, r_v) per query head h (g = h // n_rep)
    y   = Σ_h z_h·(B_v^g·W_o^h) + b      B_v folded into the output projection, per head

Values are never rebuilt: attention weights multiply the latents directly, and the value bias
folds into the output bias (attention rows sum to one). Keys are rebuilt ``KEY_CHUNK`` cached
tokens at a time with an online softmax across chunks (as flash attention does), so neither the
keys nor the dequantized latents of the whole context exist at once: the memory above the cache
is a few MiB per layer whatever the context. Scores are computed ``ATTN_BLOCK_SCORES`` at a
time. Works with ``LatentCache`` (generation) or no cache (one forward over whole sequences,
e.g. perplexity); the latents go through the same storage round trip either way, so both paths
give the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from models.lorc.cache import LatentCache, LatentSeq
from models.lorc.quant import QuantSpec, fake_quant

__all__ = ["LoRCAttention", "rotate_half"]

ATTN_BLOCK_SCORES = 1 << 20  # attention scores computed at once (4 MiB in float32)
KEY_CHUNK = 1024  # cached tokens whose latents are decoded and keys rebuilt at once


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, h, T, d_h), cos/sin (B, T, d_h)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


class LoRCAttention(nn.Module):
    """Low-rank K/V attention built from an original Llama-style attention and its factors."""

    def __init__(
        self,
        orig: nn.Module,
        A_k: torch.Tensor,
        B_k: torch.Tensor,
        A_v: torch.Tensor,
        B_v: torch.Tensor,
        rotary_emb: nn.Module,
        spec: QuantSpec | None = None,
        storage: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # Plain (not inference-mode) tensors even when built under torch.inference_mode(): the
        # module must also run under no_grad / generate.
        with torch.inference_mode(False), torch.no_grad():
            self._build(orig, A_k, B_k, A_v, B_v, rotary_emb, spec, storage)

    def _build(self, orig, A_k, B_k, A_v, B_v, rotary_emb, spec, storage) -> None:
        A_k, B_k, A_v, B_v = (t.clone() for t in (A_k, B_k, A_v, B_v))
        cfg = orig.config
        self.config = cfg
        self.layer_idx = orig.layer_idx
        self.head_dim = orig.head_dim
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.n_rep = self.n_heads // self.n_kv
        self.scaling = orig.scaling
        self.is_causal = True
        self.spec = spec or QuantSpec()
        self.storage = storage
        self.rank_k, self.rank_v = B_k.shape[0], B_v.shape[0]
        w = orig.q_proj.weight
        dtype, device = w.dtype, w.device
        d = w.shape[1]
        self.q_proj = orig.q_proj
        self._rotary = (rotary_emb,)  # a reference, not a submodule (the model owns it)

        def linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
            lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            lin.weight.data = weight.to(device=device, dtype=dtype).contiguous()
            if bias is not None:
                lin.bias.data = bias.to(device=device, dtype=dtype).contiguous()
            return lin

        kb = orig.k_proj.bias
        self.k_down = linear(A_k.T.float(), None)  # d -> r_k
        self.k_up = linear(B_k.T.float(), None if kb is None else kb.detach().float())  # r_k -> o
        self.v_down = linear(A_v.T.float(), None)  # d -> r_v
        # Fold B_v into o_proj per query head: F_h = W_o[:, h] @ B_v[:, g]ᵀ  (d, r_v)
        Wo = orig.o_proj.weight.detach().float()  # (d, H*d_h)
        Bv = B_v.float().to(Wo.device)  # (r_v, h_kv*d_h)
        dh = self.head_dim
        fused = [
            Wo[:, h * dh : (h + 1) * dh]
            @ Bv[:, (h // self.n_rep) * dh : (h // self.n_rep + 1) * dh].T
            for h in range(self.n_heads)
        ]
        bias = orig.o_proj.bias.detach().float() if orig.o_proj.bias is not None else None
        vb = orig.v_proj.bias
        if vb is not None:  # Σ_h W_o[:, h] b_v[g]: attention rows sum to one
            vbf = vb.detach().float()
            fold = sum(
                Wo[:, h * dh : (h + 1) * dh]
                @ vbf[(h // self.n_rep) * dh : (h // self.n_rep + 1) * dh]
                for h in range(self.n_heads)
            )
            bias = fold if bias is None else bias + fold
        W = torch.cat(fused, dim=1) if fused else torch.zeros(d, 0)
        self.o_proj = linear(W, bias)  # H*r_v -> d

    @property
    def rotary_emb(self) -> nn.Module:
        return self._rotary[0]

    def _store(self, c: torch.Tensor) -> torch.Tensor:
        return fake_quant(c, self.spec, self.storage)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        cache=None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        if cache is None:
            cache = kwargs.get("past_key_values")
        B, T, _ = hidden_states.shape
        dh = self.head_dim
        q = self.q_proj(hidden_states).view(B, T, self.n_heads, dh).transpose(1, 2)  # (B,H,T,dh)
        cos, sin = position_embeddings  # (B, T, dh)
        q = _rope(q, cos, sin)
        c_k = self.k_down(hidden_states).unsqueeze(1)  # (B, 1, T, r_k)
        c_v = self.v_down(hidden_states).unsqueeze(1)  # (B, 1, T, r_v)
        if cache is not None:
            if not isinstance(cache, LatentCache):
                raise TypeError(
                    f"a LoRC-compressed model needs a LatentCache (models.lorc.new_cache(model)), "
                    f"got {type(cache).__name__}"
                )
            seq_k, seq_v = cache.update(c_k, c_v, self.layer_idx, position_ids=position_ids)
            cos_k, sin_k = cache.rotary(self.rotary_emb, hidden_states)  # (B, S, dh)
        else:
            seq_k = LatentSeq(self._store(c_k), q.dtype)
            seq_v = LatentSeq(self._store(c_v), q.dtype)
            cos_k, sin_k = cos, sin
        z = self._attend(q, seq_k, seq_v, cos_k, sin_k, attention_mask)  # (B, H, T, r_v)
        z = z.transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(z), None  # (B, T, d)

    def _attend(
        self,
        q: torch.Tensor,
        seq_k: LatentSeq,
        seq_v: LatentSeq,
        cos_k: torch.Tensor,
        sin_k: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """softmax(q·kᵀ/√d_h)·c_v for roped queries q (B, H, T, d_h), one chunk of cached tokens at
        a time (online softmax): a chunk's latents are decoded and its keys rebuilt, used by every
        query block, and dropped — the keys of the whole context never exist at once. Returns the
        attention-weighted value latents (B, H, T, r_v) in q's dtype."""
        B, H, T, dh = q.shape
        G, R, S = self.n_kv, self.n_rep, seq_k.length
        chunk = max(1, min(S, KEY_CHUNK))
        block = max(1, ATTN_BLOCK_SCORES // max(B * H * chunk, 1))  # queries per score block
        qg = q.reshape(B, G, R, T, dh)  # query head h = g·R + j reads KV head g
        acc = torch.zeros(B, H, T, self.rank_v, dtype=torch.float32, device=q.device)
        top = torch.full((B, G, R, T), float("-inf"), dtype=torch.float32, device=q.device)
        total = torch.zeros(B, G, R, T, dtype=torch.float32, device=q.device)
        neg = torch.finfo(torch.float32).min
        for s0 in range(0, S, chunk):
            s1 = min(S, s0 + chunk)
            sc = s1 - s0
            k = self.k_up(seq_k.chunk(s0, s1).squeeze(1))  # (B, sc, h_kv·d_h)
            k = _rope(k.view(B, sc, G, dh).transpose(1, 2), cos_k[:, s0:s1], sin_k[:, s0:s1])
            kt = k.transpose(-1, -2)  # (B, G, dh, sc): each KV head once, never repeated
            c_v = seq_v.chunk(s0, s1)  # (B, 1, sc, r_v)
            for t0 in range(0, T, block):
                t1 = min(T, t0 + block)
                tb = t1 - t0
                if mask is None and s0 > S - T + t1 - 1:  # causal: the whole chunk is ahead
                    break
                qb = qg[..., t0:t1, :].reshape(B, G, R * tb, dh)
                scores = (qb @ kt).float().view(B, G, R, tb, sc) * self.scaling
                scores = scores + self._bias(mask, B, T, S, t0, t1, s0, s1, q.device)
                old = top[..., t0:t1]
                new = torch.maximum(old, scores.amax(-1)).clamp_(min=neg)  # (B, G, R, tb)
                probs = torch.exp(scores - new.unsqueeze(-1))  # (B, G, R, tb, sc)
                keep = torch.exp(old - new)  # rescales what earlier chunks summed
                total[..., t0:t1] = total[..., t0:t1] * keep + probs.sum(-1)
                top[..., t0:t1] = new
                # every head reads the same value latents: one (B, 1, H·tb, sc) @ (B, 1, sc, r_v)
                z = probs.to(q.dtype).reshape(B, 1, H * tb, sc) @ c_v
                acc[:, :, t0:t1] = (
                    acc[:, :, t0:t1] * keep.reshape(B, H, tb, 1)
                    + z.view(B, H, tb, self.rank_v).float()
                )
        return (acc / total.reshape(B, H, T, 1)).to(q.dtype)

    @staticmethod
    def _bias(
        mask: torch.Tensor | None,
        B: int,
        T: int,
        S: int,
        t0: int,
        t1: int,
        s0: int,
        s1: int,
        device: torch.device,
    ) -> torch.Tensor:
        """Additive float32 mask (B|1, 1, 1, t1 - t0, s1 - s0) for queries [t0, t1) and cached
        tokens [s0, s1), from a 4D float/bool mask (B, 1, T, ≥S), or causal when None."""
        neg = torch.finfo(torch.float32).min
        if mask is None:
            q_pos = torch.arange(S - T + t0, S - T + t1, device=device)[:, None]  # (tb, 1)
            allowed = torch.arange(s0, s1, device=device)[None, :] <= q_pos  # (tb, sc)
            part = allowed[None, None]
        else:
            part = mask[:, :, t0:t1, s0:s1]  # (B, 1, tb, sc)
        if part.dtype == torch.bool:
            bias = torch.zeros(part.shape, dtype=torch.float32, device=device)
            return bias.masked_fill_(~part, neg).unsqueeze(1)
        return part.float().clamp(min=neg).unsqueeze(1)
