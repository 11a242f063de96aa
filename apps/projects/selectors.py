"""Reads of projects, always scoped to the user asking."""

from django.db.models import (
    Case,
    CharField,
    Count,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from apps.datasets.models import Example, Split
from apps.projects.models import Membership, Project, Role


def projects_for_user(*, user) -> QuerySet[Project]:
    """Projects the user is a member of (all of them for superusers)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def role_in_project(*, user, project: Project) -> str | None:
    """The user's role in the project, ``None`` when not a member. Superusers act as admins."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    membership = Membership.objects.filter(project=project, user=user).only("role").first()
    return membership.role if membership else None


def get_project_for_user(*, user, project_id: int, admin: bool = False) -> Project:
    """The project if the user may see it (and administer it, with ``admin``); else 404.

    A project the user may not see raises 404 rather than 403 so that its existence does not
    leak. A member who is not an admin gets PermissionDenied for admin-only actions.
    """
    from django.core.exceptions import PermissionDenied

    projects = Project.objects.filter(pk=project_id)
    member = user.is_authenticated and not user.is_superuser
    if member:  # the project and the user's role in one query (as role_in_project reads it)
        memberships = Membership.objects.filter(project=OuterRef("pk"), user=user).order_by("id")
        projects = projects.annotate(member_role=Subquery(memberships.values("role")[:1]))
    project = projects.first()
    if project is None:
        raise Http404("No such project.")
    role = project.member_role if member else role_in_project(user=user, project=project)
    if role is None:
        raise Http404("No such project.")
    if admin and role != Role.ADMIN:
        raise PermissionDenied("Only project admins can do this.")
    project.user_role = role
    return project


def projects_with_stats_for_user(*, user) -> QuerySet[Project]:
    """The user's projects annotated with ``role``, ``member_count`` and ``example_count``."""
    role = Subquery(
        Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1],
        output_field=CharField(),
    )
    if user.is_authenticated and user.is_superuser:
        role = Coalesce(role, Value(Role.ADMIN), output_field=CharField())

    def count_of(queryset):
        return Coalesce(
            Subquery(
                queryset.order_by().values("project").annotate(n=Count("id")).values("n")[:1],
                output_field=IntegerField(),
            ),
            0,
        )

    return projects_for_user(user=user).annotate(
        role=role,
        member_count=count_of(Membership.objects.filter(project=OuterRef("pk"))),
        example_count=count_of(Example.objects.filter(project=OuterRef("pk"))),
    )


def project_members(*, project: Project) -> QuerySet[Membership]:
    """The project's memberships, admins first, then by username."""
    return (
        Membership.objects.filter(project=project)
        .select_related("user")
        .annotate(
            role_order=Case(
                When(role=Role.ADMIN, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("role_order", "user__username", "id")
    )


def get_membership(*, project: Project, membership_id: int) -> Membership:
    """One membership of the project; 404 when it belongs to another project or none."""
    membership = (
        Membership.objects.filter(project=project, pk=membership_id).select_related("user").first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership


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
