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
    """The user's projects annotated with ``role`` and ``member_count`` (the example counts are
    the datasets app's: ``apps.datasets.overview.with_example_counts``)."""
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
