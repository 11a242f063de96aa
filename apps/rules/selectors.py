"""Reads of rules and decisions, always within one project."""

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from apps.projects.models import Project
from apps.rules.models import Rule, RuleDecision


def rules_for_project(
    *,
    project: Project,
    status: str | None = None,
    origin: str | None = None,
    kind: str | None = None,
    round: int | None = None,  # noqa: A002 - the API's query parameter name
    q: str | None = None,
) -> QuerySet[Rule]:
    """The project's rules, filtered; who created and decided them comes along."""
    rules = Rule.objects.filter(project=project).select_related("created_by", "decided_by")
    if status:
        rules = rules.filter(status=status)
    if origin:
        rules = rules.filter(origin=origin)
    if kind:
        rules = rules.filter(kind=kind)
    if round is not None:
        rules = rules.filter(round_number=round)
    if q:
        rules = rules.filter(description__icontains=q)
    return rules.select_related("claimed_by")


def get_rule(*, project: Project, rule_id: int, with_decisions: bool = False) -> Rule:
    """One rule of the project; 404 when it is another project's or does not exist."""
    rules = Rule.objects.filter(project=project, pk=rule_id).select_related(
        "project", "created_by", "decided_by", "claimed_by"
    )
    if with_decisions:
        rules = rules.prefetch_related(
            Prefetch(
                "decisions",
                queryset=RuleDecision.objects.select_related("user").order_by("-created_at", "-id"),
            )
        )
    rule = rules.first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


def status_counts(*, project: Project) -> dict[str, int]:
    from django.db.models import Count

    return dict(
        Rule.objects.filter(project=project)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
