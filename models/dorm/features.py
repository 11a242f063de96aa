"""Cached encoder passes for reward models: pooled sentence features and lower-layer activations.

One forward pass of the encoder (default all-MiniLM-L6-v2, loaded by ``models.lm.load_encoder``)
per text gives both
- ``pooled`` (N, D) float32: mean-pooled, L2-normalized last layer (the frozen baseline), and
- ``hidden`` (N, T, D) float16 + ``mask`` (N, T) bool: the input of the top ``n_top`` layers, so a
  reward model can fine-tune those layers without re-running the frozen ones.

Both are cached on disk (``models/cache.py``) per chunk of texts, keyed by model id, settings and
content, so a benchmark or a second job pays the encoder once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.cache import ArrayCache, CacheStore, hash_texts, make_key

__all__ = ["EncodedTexts", "encode_texts", "CHUNK"]

CHUNK = 512  # texts per cache entry (the unit of resumption)
Progress = Callable[[float, str], None]


@dataclass
class EncodedTexts:
    """Encoder outputs for N texts: ``pooled`` (N, D), ``hidden`` (N, T, D) f16, ``mask`` (N, T)."""

    pooled: np.ndarray
    hidden: np.ndarray
    mask: np.ndarray
    model_id: str
    n_top: int

    def __len__(self) -> int:
        return self.pooled.shape[0]


def _encode_chunk(
    encoder, texts: list[str], n_top: int, max_length: int, batch_size: int, with_hidden: bool
):
    import torch

    n_layers = int(encoder.model.config.num_hidden_layers)
    dim = int(encoder.model.config.hidden_size)
    pooled = np.zeros((len(texts), dim), dtype=np.float32)
    t_max = max_length if with_hidden else 0
    hidden = np.zeros((len(texts), t_max, dim), dtype=np.float16)
    mask = np.zeros((len(texts), t_max), dtype=bool)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        enc = encoder.tokenizer(
            batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length
        ).to(encoder.device)
        with torch.inference_mode():
            out = encoder.model(**enc, output_hidden_states=True)
        m = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        last = out.last_hidden_state.float()
        p = (last * m).sum(1) / m.sum(1).clamp(min=1e-9)
        pooled[start : start + len(batch)] = torch.nn.functional.normalize(p, dim=-1).cpu().numpy()
        if not with_hidden:
            continue
        h = out.hidden_states[n_layers - n_top].float()  # (B, T, D) input of the top layers
        t = h.shape[1]
        hidden[start : start + len(batch), :t] = h.cpu().numpy().astype(np.float16)
        mask[start : start + len(batch), :t] = enc["attention_mask"].bool().cpu().numpy()
    return pooled, hidden, mask


def encode_texts(
    texts: Sequence[str],
    *,
    encoder: str | None = None,
    n_top: int = 1,
    max_length: int = 96,
    batch_size: int = 32,
    cache_dir: Path | str | CacheStore | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    with_hidden: bool = True,
) -> EncodedTexts:
    """Pooled features and top-layer inputs for ``texts``; cached per chunk of ``CHUNK`` texts.

    ``with_hidden=False`` keeps only the pooled features (``hidden``/``mask`` get 0 tokens): what
    a frozen-feature reward model needs, at 1/100 of the disk and memory.
    """
    from models.lm import _model_id, _resolve_source, default_encoder, load_encoder

    progress = progress or (lambda f, m: None)
    texts = [t if isinstance(t, str) else "" for t in texts]
    source, _ = _resolve_source(encoder or default_encoder(), None)
    model_id = _model_id(source, None)
    cache = ArrayCache(cache_dir, "dorm-activations")
    names = ("pooled", "hidden", "mask")
    enc_obj = None
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        t = max_length if with_hidden else 0
        key = make_key("dorm-act", model_id, n_top, t, hash_texts(chunk))
        hit = cache.get_many(key, names)
        if hit is None:
            if enc_obj is None:
                enc_obj = load_encoder(source, device=device, max_length=max_length)
            pooled, hidden, mask = _encode_chunk(
                enc_obj, chunk, n_top, max_length, batch_size, with_hidden
            )
            hit = {"pooled": pooled, "hidden": hidden, "mask": mask}
            cache.put_many(key, hit)
        parts.append(hit)
        done = min(start + CHUNK, len(texts))
        progress(done / max(len(texts), 1), f"encoded {done}/{len(texts)} texts")
    if not parts:
        return EncodedTexts(
            np.zeros((0, 384), np.float32),
            np.zeros((0, max_length, 384), np.float16),
            np.zeros((0, max_length), bool),
            model_id,
            n_top,
        )
    return EncodedTexts(
        np.concatenate([p["pooled"] for p in parts]),
        np.concatenate([p["hidden"] for p in parts]),
        np.concatenate([p["mask"] for p in parts]),
        model_id,
        n_top,
    )
