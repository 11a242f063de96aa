"""Caches that really store less: low-rank latents (``LatentCache``) or quantized K/V.

``LatentCache`` holds, per layer, the key latents c_k (B, 1, T, r_k) and value latents
c_v (B, 1, T, r_v) of ``LoRCAttention``, in a float ``storage`` dtype or as 8-/4-bit codes, and
once for all layers the rotary positions (B, T) int32 of the cached tokens (keys are rebuilt
before the rotary embedding, so the positions are needed at every step). ``update`` stores the new
tokens and returns two ``LatentSeq`` handles on everything stored, the new tokens included: the
attention decodes them a chunk of tokens at a time (``LatentSeq.chunk``), so the whole context is
never dequantized (nor its keys rebuilt) at once, and a forward with the cache sees exactly what a
later step reads back.

``QuantKVCache`` is the baseline: the model's own full K/V (B, h_kv, T, d_h) quantized per token
and per head (group = head_dim), for the unmodified attention.

``nbytes`` / ``bytes_per_token`` sum the tensors the cache holds: the memory measured, not computed
from a config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from models.lorc.quant import QTensor, QuantSpec, dequantize, quantize

__all__ = [
    "LatentCache",
    "LatentLayer",
    "LatentSeq",
    "QuantKVCache",
    "QuantKVLayer",
    "cache_nbytes",
]


class _Store:
    """A growing (B, H, T, w) tensor, kept in a float dtype or as integer codes + scales."""

    def __init__(self, spec: QuantSpec, storage: torch.dtype | None) -> None:
        self.spec = spec
        self.storage = storage
        self.data: torch.Tensor | QTensor | None = None

    def _encode(self, x: torch.Tensor) -> torch.Tensor | QTensor:
        if self.spec.bits is None:
            return x.to(self.storage or x.dtype)
        return quantize(x, self.spec)

    def decode(self, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(self.data, QTensor):
            return dequantize(self.data, self.spec.group, dtype)
        return self.data.to(dtype)

    def decode_slice(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """Tokens [start, stop) decoded (B, H, stop - start, w): a view for float storage in
        ``dtype``, a fresh (small) tensor for integer codes."""
        d = self.data
        if isinstance(d, QTensor):
            codes, scales = d.codes[..., start:stop, :], d.scales[..., start:stop, :]
            part = QTensor(codes, scales, d.bits, d.width)
            return dequantize(part, self.spec.group, dtype)
        return d[..., start:stop, :].to(dtype)

    def append(self, x: torch.Tensor) -> None:
        new = self._encode(x)
        if self.data is None:
            self.data = new
        elif isinstance(new, QTensor):
            old = self.data
            self.data = QTensor(
                torch.cat([old.codes, new.codes], dim=-2),
                torch.cat([old.scales, new.scales], dim=-2),
                old.bits,
                old.width,
            )
        else:
            self.data = torch.cat([self.data, new], dim=-2)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply a token/batch selection ``fn`` to every stored tensor."""
        if self.data is None:
            return
        if isinstance(self.data, QTensor):
            d = self.data
            self.data = QTensor(fn(d.codes), fn(d.scales), d.bits, d.width)
        else:
            self.data = fn(self.data)

    @property
    def length(self) -> int:
        if self.data is None:
            return 0
        t = self.data.codes if isinstance(self.data, QTensor) else self.data
        return t.shape[-2]

    @property
    def nbytes(self) -> int:
        if self.data is None:
            return 0
        return self.data.nbytes


class _StoreLayer(CacheLayerMixin):
    """One layer of a cache made of two ``_Store``s (keys and values)."""

    is_sliding = False
    is_croppable = True
    supports_early_init = False

    def __init__(self, spec: QuantSpec, storage: torch.dtype | None = None) -> None:
        super().__init__()
        self.k = _Store(spec, storage)
        self.v = _Store(spec, storage)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.dtype = key_states.dtype
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append (B, H, T_new, w) states; return all of them, decoded, in the input dtype."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.k.append(key_states)
        self.v.append(value_states)
        return self.k.decode(key_states.dtype), self.v.decode(value_states.dtype)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        return self.k.length

    def get_max_length(self) -> int:
        return -1

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.k.map(fn)
        self.v.map(fn)

    def reset(self) -> None:
        self.k.data = self.v.data = None
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove:
            self._map(lambda t: t[..., :tokens_to_remove, :])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices, ...])

    def offload(self) -> None:  # latents are small: they stay where they are
        return None

    def prefetch(self) -> None:
        return None

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class LatentSeq:
    """Read access to a layer's stored latents (B, 1, S, r), decoded one chunk of tokens at a
    time; also wraps a plain tensor (a forward without cache)."""

    def __init__(self, source: _Store | torch.Tensor, dtype: torch.dtype) -> None:
        self.source = source
        self.dtype = dtype

    @property
    def length(self) -> int:
        if isinstance(self.source, torch.Tensor):
            return self.source.shape[-2]
        return self.source.length

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        """Tokens [start, stop) as (B, 1, stop - start, r) in ``dtype``."""
        if isinstance(self.source, torch.Tensor):
            return self.source[..., start:stop, :].to(self.dtype)
        return self.source.decode_slice(start, stop, self.dtype)

    def full(self) -> torch.Tensor:
        """Every token decoded at once (tests and small inputs)."""
        return self.chunk(0, self.length)


class LatentLayer(_StoreLayer):
    """Latents c_k (B, 1, T, r_k) and c_v (B, 1, T, r_v) of one ``LoRCAttention`` layer."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append (B, 1, T_new, r) latents; return ``LatentSeq`` handles on all of them (nothing
        is decoded here)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.k.append(key_states)
        self.v.append(value_states)
        return LatentSeq(self.k, key_states.dtype), LatentSeq(self.v, value_states.dtype)


class QuantKVLayer(_StoreLayer):
    """Full keys/values (B, h_kv, T, d_h), quantized per token and head (the baseline)."""


class LatentCache(Cache):
    """The cache of a LoRC-compressed model: per-layer latents + shared rotary positions.

    ``spec``: latent storage (None bits: float in ``storage``, default the model's dtype).
    """

    def __init__(
        self,
        num_layers: int,
        spec: QuantSpec | None = None,
        storage: torch.dtype | None = None,
    ) -> None:
        self.spec = spec or QuantSpec()
        self.storage = storage
        super().__init__(layers=[LatentLayer(self.spec, storage) for _ in range(num_layers)])
        self.positions: torch.Tensor | None = None  # (B, T) int32
        self._rotary: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states, value_states, layer_idx: int, *args, position_ids=None, **kw):
        """Store latents of layer ``layer_idx``; layer 0 also records the new tokens' positions."""
        if layer_idx == 0:
            b, t = key_states.shape[0], key_states.shape[-2]
            if position_ids is None:
                start = self.get_seq_length(0)
                position_ids = torch.arange(start, start + t, device=key_states.device)
            pos = position_ids.to(torch.int32).expand(b, t)  # (B, T_new)
            self.positions = pos if self.positions is None else torch.cat([self.positions, pos], 1)
            self._rotary = None
        return super().update(key_states, value_states, layer_idx)

    def rotary(self, rotary_emb: torch.nn.Module, like: torch.Tensor):
        """(cos, sin) (B, T, d_h) of every cached position, computed once per forward step."""
        if self._rotary is None or self._rotary[0] != self.positions.shape[1]:
            cos, sin = rotary_emb(like, self.positions.long())
            self._rotary = (self.positions.shape[1], cos, sin)
        return self._rotary[1], self._rotary[2]

    def _positions_map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if self.positions is not None:
            self.positions = fn(self.positions)
        self._rotary = None

    def reset(self) -> None:
        super().reset()
        self.positions, self._rotary = None, None

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if tokens_to_remove:
            self._positions_map(lambda t: t[:, :tokens_to_remove])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._positions_map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._positions_map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._positions_map(lambda t: t[indices, ...])

    @property
    def nbytes(self) -> int:
        pos = self.positions.nbytes if self.positions is not None else 0
        return sum(layer.nbytes for layer in self.layers) + pos


class QuantKVCache(Cache):
    """Plain per-token quantization of the full K/V (8 or 4 bits, one scale per head and token),
    or (bits None) the full K/V kept in a ``storage`` float dtype (e.g. a bf16 cache for a model
    that computes in float32)."""

    def __init__(
        self, num_layers: int, spec: QuantSpec, storage: torch.dtype | None = None
    ) -> None:
        self.spec = spec
        super().__init__(layers=[QuantKVLayer(spec, storage) for _ in range(num_layers)])

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)


def cache_nbytes(cache: Cache) -> int:
    """Bytes of every tensor a cache holds (any transformers cache: keys, values, quantized
    states, positions), measured from the tensors."""
    if hasattr(cache, "nbytes"):
        return int(cache.nbytes)
    total = 0
    for layer in cache.layers:
        for name in ("keys", "values", "_quantized_keys", "_quantized_values"):
            total += _tensor_bytes(getattr(layer, name, None))
    return total


def _tensor_bytes(obj) -> int:
    if obj is None:
        return 0
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if isinstance(obj, Sequence):
        return sum(_tensor_bytes(o) for o in obj)
    return 0
