"""Reads for overlap labeling: what to hand out, what conflicts, and how well people agree.

Agreement is Krippendorff's alpha (nominal; the ``krippendorff`` package) over all answers —
it handles any number of annotators and missing answers — overall and per label (that label
against the rest), and per annotator Cohen's kappa (scikit-learn) against each other annotator
on the examples both answered, and against the final gold label.
"""

from __future__ import annotations

import math
from collections import defaultdict

import krippendorff
import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet
from sklearn.metrics import cohen_kappa_score

from apps.agreement.models import AnnotatorLabel
from apps.datasets.models import Example
from apps.datasets.selectors import label_candidates

# Agreement is computed over at most this many answers (the newest); a bigger project gets a
# note saying so.
REPORT_ROW_CAP = 200_000


def overlap_candidates(*, project, user, split: str, from_pool: bool, k: int) -> QuerySet:
    """Examples ``user`` may answer: no gold yet, not answered by them, fewer than ``k``
    answers."""
    full = (
        AnnotatorLabel.objects.filter(project=project)
        .values("example_id")
        .annotate(n=Count("id"))
        .filter(n__gte=k)
        .values("example_id")
    )
    mine = AnnotatorLabel.objects.filter(project=project, user=user).values("example_id")
    return (
        label_candidates(project=project, split=split, from_pool=from_pool)
        .exclude(id__in=mine)
        .exclude(id__in=full)
    )


def conflict_ids(*, project, k: int) -> list[int]:
    """Examples with at least ``k`` answers that disagree and no gold label yet, oldest first."""
    return list(
        AnnotatorLabel.objects.filter(project=project, example__gold_label__isnull=True)
        .values("example_id")
        .annotate(n=Count("id"), kinds=Count("label", distinct=True))
        .filter(n__gte=k, kinds__gt=1)
        .order_by("example_id")
        .values_list("example_id", flat=True)
    )


def votes_for(*, example) -> list[dict]:
    """Each answer on the example: ``{"user", "label"}``, in the order given."""
    return [
        {"user": vote.user.username, "label": vote.label}
        for vote in AnnotatorLabel.objects.filter(example=example).select_related("user")
    ]


def waiting_count(*, project, k: int) -> int:
    """Examples with some answers but fewer than ``k`` and no gold label."""
    return (
        AnnotatorLabel.objects.filter(project=project, example__gold_label__isnull=True)
        .values("example_id")
        .annotate(n=Count("id"))
        .filter(n__lt=k)
        .count()
    )


def _alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha (nominal) of a raters × units matrix with NaN for no answer; None
    when it is undefined (fewer than two answers on any unit, or a single value throughout)."""
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if not pairable.any():
        return None
    values = matrix[:, pairable]
    if len(np.unique(values[~np.isnan(values)])) < 2:
        return None
    try:
        value = float(krippendorff.alpha(reliability_data=values, level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(value) else value


def _kappa(a: list[int], b: list[int], labels: list[int]) -> float | None:
    if len(a) < 2:
        return None
    if len(set(a) | set(b)) < 2:
        return 1.0 if a == b else None
    value = float(cohen_kappa_score(a, b, labels=labels))
    return None if math.isnan(value) else value


def agreement_report(*, project) -> dict:
    """How well the project's annotators agree.

    Returns ``{"answers", "examples", "multi", "alpha", "per_label": [{"name", "answers",
    "alpha"}], "per_annotator": [{"username", "answers", "pair_kappa", "gold_agree",
    "gold_kappa", "gold_n"}], "capped"}``; alphas/kappas are None where undefined.
    """
    labels = list(range(len(project.labels or [])))
    rows = list(
        AnnotatorLabel.objects.filter(project=project)
        .order_by("-id")
        .values_list("example_id", "user_id", "label")[: REPORT_ROW_CAP + 1]
    )
    capped = len(rows) > REPORT_ROW_CAP
    rows = rows[:REPORT_ROW_CAP]
    by_example: dict[int, dict[int, int]] = defaultdict(dict)
    for example_id, user_id, label in rows:
        by_example[example_id][user_id] = label
    users = sorted({user_id for _, user_id, _ in rows})
    examples = sorted(by_example)
    user_index = {user_id: i for i, user_id in enumerate(users)}
    matrix = np.full((len(users), len(examples)), np.nan)
    for column, example_id in enumerate(examples):
        for user_id, label in by_example[example_id].items():
            matrix[user_index[user_id], column] = label

    per_label = []
    for index in labels:
        binary = np.where(np.isnan(matrix), np.nan, (matrix == index).astype(float))
        per_label.append(
            {
                "name": str(project.labels[index]),
                "answers": int(np.nansum(matrix == index)),
                "alpha": _alpha(binary),
            }
        )

    gold = dict(
        Example.objects.filter(id__in=examples, gold_label__isnull=False).values_list(
            "id", "gold_label"
        )
    )
    names = dict(get_user_model().objects.filter(id__in=users).values_list("id", "username"))
    per_annotator = []
    for user_id in users:
        mine = {e: answers[user_id] for e, answers in by_example.items() if user_id in answers}
        kappas = []
        for other in users:
            if other == user_id:
                continue
            shared = [e for e in mine if other in by_example[e]]
            value = _kappa(
                [mine[e] for e in shared], [by_example[e][other] for e in shared], labels
            )
            if value is not None:
                kappas.append(value)
        with_gold = [e for e in mine if e in gold]
        own = [mine[e] for e in with_gold]
        truth = [gold[e] for e in with_gold]
        per_annotator.append(
            {
                "username": names.get(user_id, f"#{user_id}"),
                "answers": len(mine),
                "pair_kappa": sum(kappas) / len(kappas) if kappas else None,
                "gold_n": len(with_gold),
                "gold_agree": (
                    sum(a == b for a, b in zip(own, truth, strict=True)) / len(with_gold)
                    if with_gold
                    else None
                ),
                "gold_kappa": _kappa(own, truth, labels),
            }
        )
    per_annotator.sort(key=lambda row: row["username"])
    return {
        "answers": len(rows),
        "examples": len(examples),
        "multi": int(((~np.isnan(matrix)).sum(axis=0) >= 2).sum()) if examples else 0,
        "alpha": _alpha(matrix) if examples else None,
        "per_label": per_label,
        "per_annotator": per_annotator,
        "capped": capped,
    }
