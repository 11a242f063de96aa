"""Rank schedules: how many latent channels each layer's keys and values keep, under a budget.

A ``Schedule`` is two lists of ranks (keys, values), one entry per layer. ``KVLayout`` says what a
token costs in the cache for a schedule (``bytes_per_token``: latents in their storage + the shared
int32 position), so every schedule below is fitted to a budget in bytes per token — a compression
ratio is ``ratio × layout.full_bytes``. Ranks move in ``unit`` channels (default 8).

- ``uniform``: the same rank for every layer's K and V, the largest that fits.
- ``progressive``: the LoRC paper's schedule. Condition numbers κ_l of each layer's weights are
  accumulated from the deepest layer up (log κ̃_l = Σ_{j≥l} log κ_j); shallow layers, whose errors
  pass through more of the network, keep more rank: r_l = r_max·(ρ + (1−ρ)·s_l), s_l the normalized
  log κ̃_l, with r_max fitted to the budget and the remainder handed out by s_l.
- ``greedy``: energy allocation. Every unit of every matrix is worth the share of that matrix's
  whitened output energy it carries (σ_i² / Σσ²); the best units are taken until the budget is
  spent.
- ``fit_to_perplexity``: the smallest budget whose schedule keeps calibration perplexity under a
  ceiling (bisection over bytes, any of the schedules above).

Every fit is maximal: no matrix can take one more unit without going over the budget (uniform and
progressive: within their own shape).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from models.lorc.factorize import LayerFactors
from models.lorc.quant import QuantSpec

__all__ = [
    "BudgetError",
    "KVLayout",
    "Schedule",
    "fit_to_perplexity",
    "full_schedule",
    "greedy",
    "progressive",
    "uniform",
]

POSITION_BYTES = 4  # int32 rotary position per cached token, shared by all layers


class BudgetError(ValueError):
    """The budget cannot hold even the smallest schedule (one unit per matrix)."""


@dataclass
class Schedule:
    """Ranks per layer for keys and values, and how they were chosen."""

    ranks_k: list[int]
    ranks_v: list[int]
    method: str = "custom"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ranks_k) != len(self.ranks_v):
            raise ValueError("ranks_k and ranks_v need one entry per layer each")
        if any(r < 1 for r in self.ranks_k + self.ranks_v):
            raise ValueError("every rank must be >= 1")

    @property
    def n_layers(self) -> int:
        return len(self.ranks_k)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        return cls(
            [int(r) for r in d["ranks_k"]],
            [int(r) for r in d["ranks_v"]],
            d.get("method", "custom"),
            dict(d.get("meta", {})),
        )


@dataclass(frozen=True)
class KVLayout:
    """A model's KV geometry and the storage of its cache."""

    n_layers: int
    kv_dim: int  # h_kv * d_h: full width of K (and of V) per layer
    float_bytes: int = 2  # bytes of one float of the full cache (bf16/fp16: 2)
    spec: QuantSpec = QuantSpec()

    @property
    def full_bytes(self) -> int:
        """Bytes per token of the uncompressed cache (K and V of every layer, float)."""
        return 2 * self.n_layers * self.kv_dim * self.float_bytes

    def matrix_bytes(self, rank: int) -> int:
        return self.spec.bytes_per_token(rank, self.float_bytes)

    def bytes_per_token(self, s: Schedule) -> int:
        """Bytes one token takes in a ``LatentCache`` with this schedule (batch row of one)."""
        return POSITION_BYTES + sum(
            self.matrix_bytes(rk) + self.matrix_bytes(rv) for rk, rv in zip(s.ranks_k, s.ranks_v)
        )

    def saved(self, s: Schedule) -> float:
        """Share of the full cache's bytes saved (1 − bytes / full)."""
        return 1.0 - self.bytes_per_token(s) / self.full_bytes


def full_schedule(layout: KVLayout) -> Schedule:
    r = [layout.kv_dim] * layout.n_layers
    return Schedule(list(r), list(r), "full")


def _check_min(layout: KVLayout, budget: float, unit: int) -> None:
    smallest = Schedule([unit] * layout.n_layers, [unit] * layout.n_layers)
    if layout.bytes_per_token(smallest) > budget:
        raise BudgetError(
            f"budget {budget:.0f} B/token is below the smallest schedule "
            f"({layout.bytes_per_token(smallest)} B/token at rank {unit} everywhere)"
        )


def _fill(
    layout: KVLayout,
    ranks: list[list[int]],
    order: Sequence[tuple[int, int]],
    budget: float,
    unit: int,
) -> None:
    """Hand out leftover units round-robin over matrices (kind, layer) in ``order`` until no
    matrix can grow without passing the budget (makes any fit maximal)."""
    grew = True
    while grew:
        grew = False
        for kind, layer in order:
            r = ranks[kind][layer]
            if r >= layout.kv_dim:
                continue
            new = min(r + unit, layout.kv_dim)
            cost = layout.matrix_bytes(new) - layout.matrix_bytes(r)
            if _used(layout, ranks) + cost <= budget:
                ranks[kind][layer] = new
                grew = True


def _used(layout: KVLayout, ranks: list[list[int]]) -> int:
    return layout.bytes_per_token(Schedule(ranks[0], ranks[1]))


def uniform(layout: KVLayout, budget: float, unit: int = 8) -> Schedule:
    """The same rank r (a multiple of ``unit``, or full) for every K and V, largest that fits."""
    _check_min(layout, budget, unit)
    best = unit
    for r in range(unit, layout.kv_dim + unit, unit):
        r = min(r, layout.kv_dim)
        if layout.bytes_per_token(Schedule([r] * layout.n_layers, [r] * layout.n_layers)) <= budget:
            best = r
    n = layout.n_layers
    return Schedule([best] * n, [best] * n, "uniform", {"budget": budget})


def progressive(
    layout: KVLayout,
    factors: Sequence[LayerFactors],
    budget: float,
    unit: int = 8,
    rho: float = 0.5,
) -> Schedule:
    """Cumulative-condition-number ranks (shallow layers keep more), fitted to ``budget``."""
    _check_min(layout, budget, unit)
    n = layout.n_layers
    scores = []
    for kind in ("k", "v"):
        logk = [math.log(max(getattr(f, kind).cond, 1.0)) for f in factors]
        cum = [sum(logk[i:]) for i in range(n)]  # log κ̃_l, deepest layer last
        lo, hi = min(cum), max(cum)
        scores.append([(c - lo) / (hi - lo) if hi > lo else 1.0 for c in cum])

    def ranks_at(r_max: float) -> list[list[int]]:
        return [
            [
                min(layout.kv_dim, max(unit, unit * int(r_max * (rho + (1 - rho) * s) / unit)))
                for s in scores[kind]
            ]
            for kind in (0, 1)
        ]

    lo_r, hi_r = float(unit), float(layout.kv_dim) / rho + unit
    for _ in range(60):
        mid = (lo_r + hi_r) / 2
        if _used(layout, ranks_at(mid)) <= budget:
            lo_r = mid
        else:
            hi_r = mid
    ranks = ranks_at(lo_r)
    order = sorted(((k, i) for k in (0, 1) for i in range(n)), key=lambda m: -scores[m[0]][m[1]])
    _fill(layout, ranks, order, budget, unit)
    meta = {"budget": budget, "r_max": lo_r, "rho": rho, "score_k": scores[0], "score_v": scores[1]}
    return Schedule(ranks[0], ranks[1], "progressive", meta)


def greedy(
    layout: KVLayout,
    factors: Sequence[LayerFactors],
    budget: float,
    unit: int = 8,
) -> Schedule:
    """Energy allocation: units taken best-first by the share of their matrix's energy."""
    _check_min(layout, budget, unit)
    n = layout.n_layers
    energy = [[f.k.energy().tolist() for f in factors], [f.v.energy().tolist() for f in factors]]
    ranks = [[unit] * n, [unit] * n]
    blocks = []  # (gain, kind, layer, start)
    for kind in (0, 1):
        for layer in range(n):
            e = energy[kind][layer]
            for start in range(unit, layout.kv_dim, unit):
                blocks.append((sum(e[start : start + unit]), kind, layer, start))
    blocks.sort(key=lambda b: (-b[0], b[3], b[1], b[2]))
    closed: set[tuple[int, int]] = set()
    used = _used(layout, ranks)
    for _gain, kind, layer, start in blocks:
        if (kind, layer) in closed or ranks[kind][layer] != start:
            closed.add((kind, layer))  # a skipped unit ends the matrix's prefix
            continue
        new = min(start + unit, layout.kv_dim)
        cost = layout.matrix_bytes(new) - layout.matrix_bytes(start)
        if used + cost <= budget:
            ranks[kind][layer] = new
            used += cost
        else:
            closed.add((kind, layer))
    order = sorted(
        ((k, i) for k in (0, 1) for i in range(n)),
        key=lambda m: -sum(energy[m[0]][m[1]][ranks[m[0]][m[1]] :][:unit]),
    )
    _fill(layout, ranks, order, budget, unit)
    return Schedule(ranks[0], ranks[1], "greedy", {"budget": budget})


def fit_to_perplexity(
    make: Callable[[float], Schedule],
    perplexity: Callable[[Schedule], float],
    ceiling: float,
    lo: float,
    hi: float,
    steps: int = 7,
) -> tuple[Schedule, float, list[tuple[float, float]]]:
    """Smallest budget (bytes/token, bisection in [lo, hi]) whose schedule ``make(budget)`` keeps
    ``perplexity`` (on calibration text) at or below ``ceiling``.

    Returns (schedule, its perplexity, [(budget, perplexity) tried]). ``hi`` must meet the ceiling.
    """
    tried: list[tuple[float, float]] = []
    best = make(hi)
    best_ppl = perplexity(best)
    tried.append((hi, best_ppl))
    if best_ppl > ceiling:
        raise BudgetError(
            f"even {hi:.0f} B/token gives perplexity {best_ppl:.3f} > ceiling {ceiling:.3f}"
        )
    for _ in range(steps):
        mid = (lo + hi) / 2
        try:
            s = make(mid)
        except BudgetError:
            lo = mid
            continue
        ppl = perplexity(s)
        tried.append((mid, ppl))
        if ppl <= ceiling:
            hi, best, best_ppl = mid, s, ppl
        else:
            lo = mid
    best.meta = {**best.meta, "ceiling": ceiling, "perplexity": best_ppl}
    return best, best_ppl, tried
