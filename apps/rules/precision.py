"""One definition of a rule's dev precision, shown the same in review, live preview, the rules
list and for seed rules (imported rule votes).

Dev precision is the share of the rule's matched gold dev examples that carry its label,
smoothed with one pseudo-match either way (Laplace; the mean of a Beta(1, 1) posterior):
``(correct + 1) / (matched + 2)``. A rule right on 1 of 1 dev example shows 67%, not 100%; with
many dev matches the smoothing fades. No dev match: no precision ("—").
"""

from __future__ import annotations

PRECISION_HELP = (
    "Dev precision, smoothed: (correct + 1) / (matched gold dev examples + 2), so a rule right "
    "on 1 of 1 dev example shows 67%, not 100%, and few matches pull it toward 50%. "
    "A suggested rule's counts leave out the dev example it was proposed from."
)


def dev_precision(*, correct: int, matched: int) -> float | None:
    """Smoothed dev precision in [0, 1], or None without a matched gold dev example."""
    if not matched:
        return None
    return (int(correct) + 1) / (int(matched) + 2)


def dev_precision_text(*, correct: int | None, matched: int | None) -> str:
    """ "67% (1 of 1 dev)", or "—" without a matched gold dev example."""
    if correct is None or not matched:
        return "—"
    value = dev_precision(correct=correct, matched=matched)
    return f"{100 * value:.1f}% ({int(correct):,} of {int(matched):,} dev)"


def stats_precision_text(stats: dict | None) -> str:
    """The text for a rule's stored stats (``dev_correct`` of ``dev_matches``; rules stored
    by the live preview name the matched gold count ``dev_labeled``)."""
    stats = stats or {}
    matched = stats.get("dev_labeled", stats.get("dev_matches"))
    return dev_precision_text(correct=stats.get("dev_correct"), matched=matched)
