"""Per-token, per-group symmetric integer quantization of cache tensors (8-bit and 4-bit).

A tensor (..., r) is cut into groups of ``group`` values along its last axis (the last group may
be shorter); each group gets one absmax scale, stored in float16. 8-bit codes are int8 in
[-127, 127]; 4-bit codes are in [-7, 7], offset by 8 and packed two per byte (r must be even).
Quantizing a token never looks at other tokens, so a cache can append tokens one by one and get the
very same codes as quantizing them all at once (``fake_quant`` == what the cache returns).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["QTensor", "QuantSpec", "dequantize", "fake_quant", "quantize"]

_SCALE_DTYPE = torch.float16
_SCALE_MIN = 2.0**-14  # smallest normal float16: scales never underflow to zero


@dataclass(frozen=True)
class QuantSpec:
    """How a cache stores a tensor: ``bits`` 8 or 4 (integer codes), or None (plain ``dtype``)."""

    bits: int | None = None
    group: int = 32

    def __post_init__(self) -> None:
        if self.bits not in (None, 4, 8):
            raise ValueError(f"bits must be None, 8 or 4, got {self.bits}")
        if self.group < 2 or self.group % 2:
            raise ValueError(f"group must be an even number >= 2, got {self.group}")

    @property
    def label(self) -> str:
        return "float" if self.bits is None else f"int{self.bits}"

    def bytes_per_token(self, width: int, float_bytes: int) -> int:
        """Bytes one token of a (..., width) tensor takes: codes + one float16 scale per group."""
        if width == 0:
            return 0
        if self.bits is None:
            return width * float_bytes
        groups = -(-width // self.group)
        return width * self.bits // 8 + groups * 2


@dataclass
class QTensor:
    """Integer codes (..., r) int8, or (..., r/2) uint8 for 4-bit, and scales (..., groups)."""

    codes: torch.Tensor
    scales: torch.Tensor
    bits: int
    width: int

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scales.nbytes


def _grouped(x: torch.Tensor, group: int) -> tuple[torch.Tensor, int]:
    """x (..., r) -> (..., G, group) zero-padded, and the pad length."""
    r = x.shape[-1]
    pad = (-r) % group
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], -1, group), pad


def quantize(x: torch.Tensor, spec: QuantSpec) -> QTensor:
    """x (..., r) float -> QTensor with per-token, per-group absmax scales."""
    if spec.bits is None:
        raise ValueError("quantize needs bits=8 or bits=4")
    r = x.shape[-1]
    if spec.bits == 4 and r % 2:
        raise ValueError(f"4-bit codes pack two per byte: width {r} must be even")
    qmax = 127 if spec.bits == 8 else 7
    g, pad = _grouped(x.float(), spec.group)  # (..., G, group)
    scale = (g.abs().amax(-1) / qmax).clamp(min=_SCALE_MIN).to(_SCALE_DTYPE)  # (..., G)
    codes = torch.round(g / scale.float().unsqueeze(-1)).clamp_(-qmax, qmax)
    codes = codes.reshape(*x.shape[:-1], -1)[..., :r]  # (..., r)
    if spec.bits == 8:
        return QTensor(codes.to(torch.int8), scale, 8, r)
    u = (codes + 8).to(torch.uint8)  # [1, 15]
    packed = u[..., 0::2] | (u[..., 1::2] << 4)  # (..., r/2)
    return QTensor(packed, scale, 4, r)


def dequantize(q: QTensor, group: int, dtype: torch.dtype) -> torch.Tensor:
    """QTensor -> (..., r) in ``dtype``."""
    if q.bits == 8:
        codes = q.codes.float()
    else:
        lo = (q.codes & 0x0F).to(torch.int16) - 8
        hi = (q.codes >> 4).to(torch.int16) - 8
        codes = torch.stack([lo, hi], dim=-1).reshape(*q.codes.shape[:-1], -1).float()
    g, pad = _grouped(codes, group)  # (..., G, group)
    x = g * q.scales.float().unsqueeze(-1)
    return x.reshape(*codes.shape[:-1], -1)[..., : q.width].to(dtype)


def fake_quant(
    x: torch.Tensor, spec: QuantSpec, storage: torch.dtype | None = None
) -> torch.Tensor:
    """What a cache with ``spec`` hands back for ``x``: quantize + dequantize (bits), or a round
    trip through the ``storage`` float dtype (bits None), in x's dtype."""
    if spec.bits is not None:
        return dequantize(quantize(x, spec), spec.group, x.dtype)
    if storage is not None and storage != x.dtype:
        return x.to(storage).to(x.dtype)
    return x
