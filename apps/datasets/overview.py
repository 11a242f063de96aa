"""What the project pages show about a project's examples: counts, label use, the overview.

The projects app owns projects and membership and sits below this app (an example belongs to a
project), so its pages ask here — inside their functions, as they ask the jobs and alignment apps —
instead of reading the examples table themselves.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from apps.datasets.models import Example, Split
from apps.projects.models import Project


def with_example_counts(projects: QuerySet[Project]) -> QuerySet[Project]:
    """``projects`` annotated with ``example_count`` (one grouped subquery per row)."""
    per_project = (
        Example.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    return projects.annotate(
        example_count=Coalesce(Subquery(per_project, output_field=IntegerField()), 0)
    )


def labels_in_use(*, project: Project) -> dict[int, int]:
    """Label index → how many examples carry it as gold or current label (one table scan)."""
    used: dict[int, int] = {}
    rows = (
        Example.objects.filter(project=project)
        .order_by()
        .values_list("gold_label", "label")
        .annotate(n=Count("id"))
    )
    for gold, label, n in rows:
        for index in {gold, label} - {None}:
            used[index] = used.get(index, 0) + n
    return used


def project_has_rule_votes(*, project: Project) -> bool:
    """Whether examples carry rule votes (which refer to labels by position)."""
    return Example.objects.filter(project=project, votes__isnull=False).exists()


def project_has_examples(*, project: Project) -> bool:
    """Whether the project has any example (its task type is fixed from then on)."""
    return Example.objects.filter(project=project).exists()


def project_overview(*, project: Project) -> dict:
    """What the dashboard shows: counts per split and the gold and current label distributions.

    Returns ``{"splits": [{"split", "name", "total", "gold", "labeled"}], "total": int,
    "gold_distribution": [(label, count)], "label_distribution": [(label, count)]}``.
    One grouped scan of the project's examples (at most splits × labels² groups come back).
    """
    per_split = {value: {"total": 0, "gold": 0, "labeled": 0} for value in Split.values}
    gold_counts: dict[int, int] = {}
    label_counts: dict[int, int] = {}
    groups = (
        Example.objects.filter(project=project)
        .order_by()
        .values_list("split", "gold_label", "label")
        .annotate(n=Count("id"))
    )
    for split, gold, label, n in groups:
        counts = per_split.setdefault(split, {"total": 0, "gold": 0, "labeled": 0})
        counts["total"] += n
        if gold is not None:
            counts["gold"] += n
            gold_counts[gold] = gold_counts.get(gold, 0) + n
        if label is not None:
            counts["labeled"] += n
            label_counts[label] = label_counts.get(label, 0) + n
    names = dict(Split.choices)
    splits = [
        {"split": value, "name": names.get(value, value), **counts}
        for value, counts in per_split.items()
    ]

    def distribution(counts: dict[int, int]) -> list[tuple[str, int]]:
        counts = dict(counts)
        rows = [(name, counts.pop(index, 0)) for index, name in enumerate(project.labels)]
        # Indexes past the label list should not exist; show them rather than hide them.
        rows += [(f"#{index} (unknown)", n) for index, n in sorted(counts.items())]
        return rows

    return {
        "splits": splits,
        "total": sum(row["total"] for row in splits),
        "gold_distribution": distribution(gold_counts),
        "label_distribution": distribution(label_counts),
    }
