"""Per-rule statistics on a sparse label matrix: what Snorkel's ``LFAnalysis`` reports, without
densifying.

coverage, overlap and conflict are fractions of ALL n examples (Snorkel's definitions):
- coverage: the rule votes;
- overlap: the rule votes and at least one other rule votes too;
- conflict: the rule votes and some rule votes a different label on the same example.
With gold labels ``y`` (-1 = unknown, those rows are skipped) each rule also gets correct and
incorrect counts and a smoothed precision (correct + 1) / (correct + incorrect + 2): the mean of
the Beta(1, 1) posterior, so a rule right 3 times out of 3 scores 0.8 rather than 1.0 and a rule
with no labeled matches scores 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.prboost.matching import LabelMatrix


def smoothed_precision(
    correct: np.ndarray | int, matched: np.ndarray | int, prior: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray | float:
    """(correct + a) / (matched + a + b): the mean of the Beta(a, b) posterior of precision."""
    a, b = prior
    return (np.asarray(correct, dtype=np.float64) + a) / (
        np.asarray(matched, dtype=np.float64) + a + b
    )


@dataclass(frozen=True)
class RuleStats:
    index: int  # column of the label matrix
    polarity: tuple[int, ...]  # the labels the rule votes
    matches: int  # examples it votes on
    coverage: float  # matches / n
    overlap: float  # fraction of n: votes and another rule votes too
    conflict: float  # fraction of n: votes and another rule votes differently
    correct: int  # votes equal to the gold label (rows with y >= 0)
    incorrect: int  # votes different from the gold label (rows with y >= 0)
    precision: float  # smoothed: (correct + 1) / (correct + incorrect + 2)

    @property
    def labeled_matches(self) -> int:
        return self.correct + self.incorrect

    @property
    def empirical_accuracy(self) -> float:
        """correct / (correct + incorrect), unsmoothed; NaN without labeled matches."""
        total = self.correct + self.incorrect
        return self.correct / total if total else float("nan")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["polarity"] = list(self.polarity)
        return out


def rule_stats(
    L: LabelMatrix, y: np.ndarray | None = None, prior: tuple[float, float] = (1.0, 1.0)
) -> list[RuleStats]:
    """One ``RuleStats`` per column of ``L`` (n, m); ``y`` (n,) gold labels with -1 = unknown."""
    n, m = L.n, L.m
    csc = L.csc
    col_of = np.repeat(np.arange(m), np.diff(csc.indptr))  # (nnz,) column of each vote
    rows = csc.indices.astype(np.int64)  # (nnz,) row of each vote
    votes = csc.data.astype(np.int64) - 1  # (nnz,)

    csr = L.csr
    per_row = np.diff(csr.indptr)  # (n,) votes per example
    conflicted = np.zeros(n, dtype=bool)
    nonempty = np.flatnonzero(per_row > 0)
    if nonempty.size:
        starts = csr.indptr[nonempty]
        lo = np.minimum.reduceat(csr.data, starts) if csr.nnz else np.zeros(0)
        hi = np.maximum.reduceat(csr.data, starts) if csr.nnz else np.zeros(0)
        conflicted[nonempty] = lo != hi

    matches = np.diff(csc.indptr).astype(np.int64)
    overlaps = np.bincount(col_of[per_row[rows] > 1], minlength=m)
    conflicts = np.bincount(col_of[conflicted[rows]], minlength=m)
    if y is not None:
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels for {n} rows")
        known = y[rows] >= 0
        right = known & (votes == y[rows])
        correct = np.bincount(col_of[right], minlength=m)
        incorrect = np.bincount(col_of[known & ~right], minlength=m)
    else:
        correct = np.zeros(m, dtype=np.int64)
        incorrect = np.zeros(m, dtype=np.int64)
    precision = smoothed_precision(correct, correct + incorrect, prior)
    denom = max(n, 1)
    out = []
    for j in range(m):
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        out.append(
            RuleStats(
                index=j,
                polarity=tuple(int(v) for v in np.unique(votes[lo:hi])),
                matches=int(matches[j]),
                coverage=float(matches[j] / denom),
                overlap=float(overlaps[j] / denom),
                conflict=float(conflicts[j] / denom),
                correct=int(correct[j]),
                incorrect=int(incorrect[j]),
                precision=float(precision[j]),
            )
        )
    return out


def label_coverage(L: LabelMatrix) -> float:
    """Fraction of examples at least one rule votes on."""
    return float(L.covered().mean()) if L.n else 0.0


def novelty(matches: np.ndarray, covered: np.ndarray) -> float:
    """Share of a rule's matches that no accepted rule covers yet (``covered``: (n,) bool)."""
    matches = np.asarray(matches, dtype=np.int64)
    if matches.size == 0:
        return 0.0
    return float((~covered[matches]).mean())
