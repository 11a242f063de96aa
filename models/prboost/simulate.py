"""A simulated annotator for experiments: it judges a candidate rule by its precision on the pool's
held-back gold labels, the way a careful person who checks a rule's sample matches would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class SimulatedAnnotator:
    """Accepts a candidate when its precision on held-back gold labels is at least ``threshold``.

    ``gold`` (n_pool,) holds the pool's hidden labels (-1 = unknown; those matches do not count).
    A candidate with no gold-labeled match is rejected.
    """

    gold: np.ndarray
    threshold: float = 0.6

    def __post_init__(self) -> None:
        self.gold = np.asarray(self.gold, dtype=np.int64).reshape(-1)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")

    def precision(self, matches: np.ndarray, label: int) -> float:
        """Share of gold-labeled matched pool examples whose gold label is ``label`` (0 if none)."""
        matches = np.asarray(matches, dtype=np.int64)
        if matches.size and (matches.min() < 0 or matches.max() >= self.gold.size):
            raise ValueError("match indices fall outside the pool")
        g = self.gold[matches]
        g = g[g >= 0]
        return float((g == label).mean()) if g.size else 0.0

    def accepts(self, candidate) -> bool:
        """True when ``candidate.rule.label`` is right on ≥ threshold of its pool matches."""
        return self.precision(candidate.matches, candidate.rule.label) >= self.threshold

    def review(self, candidates: Sequence, budget: int | None = None) -> list[bool]:
        """Decisions for the first ``budget`` candidates (all when None), in order."""
        shown = list(candidates) if budget is None else list(candidates)[: max(0, budget)]
        return [self.accepts(c) for c in shown]
