"""Quality measures of a (compressed) causal LM: perplexity on token windows, top-k agreement."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["perplexity", "token_windows", "topk_agreement"]


def token_windows(tokenizer, texts: Sequence[str], window: int, max_tokens: int) -> torch.Tensor:
    """Texts joined (EOS between them), tokenized, cut into (N, window) int64 rows covering at
    most ``max_tokens`` tokens."""
    sep = tokenizer.eos_token or "\n\n"
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t + sep, add_special_tokens=False)["input_ids"]
        if len(ids) >= max_tokens:
            break
    n = min(len(ids), max_tokens) // window
    if n == 0:
        raise ValueError(f"texts give {len(ids)} tokens, fewer than one window of {window}")
    return torch.tensor(ids[: n * window], dtype=torch.long).view(n, window)


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    windows: torch.Tensor,
    batch_size: int = 1,
    cache_factory: Callable[[], object] | None = None,
    prefill: int = 0,
) -> float:
    """exp(mean next-token NLL) over (N, T) windows, each scored alone from its first token.

    ``cache_factory``: a fresh cache per batch, None: a plain forward without cache. ``prefill``
    > 0 (with a cache): the first ``prefill`` tokens go in one call, the rest in a second call that
    reads them back from the cache, so the scores include what the cache's storage loses even for
    caches that hand back a call's own states unquantized (transformers' ``QuantizedCache``).
    """
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        ids = windows[start : start + batch_size].to(device)  # (B, T)
        if cache_factory is None:
            logits = model(input_ids=ids, use_cache=False).logits
        else:
            cache = cache_factory()
            cut = prefill if 0 < prefill < ids.shape[1] else ids.shape[1]
            parts = [model(input_ids=ids[:, :cut], cache=cache, use_cache=True).logits]
            if cut < ids.shape[1]:
                parts.append(model(input_ids=ids[:, cut:], cache=cache, use_cache=True).logits)
            logits = torch.cat(parts, dim=1)
        logits = logits[:, :-1].float()  # (B, T-1, V)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
        )
        nll += float(loss)
        count += ids[:, 1:].numel()
    return math.exp(nll / max(count, 1))


def topk_agreement(ref_ids: np.ndarray, ids: np.ndarray, k: int | None = None) -> dict[str, float]:
    """Agreement of top-k answer words (N, k) of a compressed model with the reference model's:
    ``top1`` (same best word), ``overlap`` (mean |top-k ∩ top-k_ref| / k)."""
    k = k or ref_ids.shape[1]
    a, b = ref_ids[:, :k], ids[:, :k]
    top1 = float(np.mean(a[:, 0] == b[:, 0])) if len(a) else float("nan")
    inter = [len(set(x[x >= 0]) & set(y[y >= 0])) / k for x, y in zip(a, b)]
    return {"top1": top1, "overlap": float(np.mean(inter)) if inter else float("nan")}
