"""Permissions shared by every API view: who may see or change a project's resources.

They read project membership, so they live with it (apps.api, the DRF plumbing every app's API
uses, stays below the projects app).

Views under ``/api/v1/projects/<project_id>/...`` mix in :class:`ProjectScopedMixin`, which
resolves ``self.project`` for the requesting user: non-members get 404 (the project's existence
does not leak), members who are not admins get 403 on admin-only views.
"""

from functools import cached_property

from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.projects.models import Role
from apps.projects.selectors import get_project_for_user, role_in_project


class ProjectScopedMixin:
    """Resolves ``self.project`` from the ``project_id`` URL argument, checking membership.

    Set ``admin_only = True`` for views where every method needs the admin role, or
    ``admin_for_writes = True`` where reads are for members and writes for admins.
    """

    admin_only = False
    admin_for_writes = False

    @cached_property
    def project(self):
        needs_admin = self.admin_only or (
            self.admin_for_writes and self.request.method not in SAFE_METHODS
        )
        return get_project_for_user(
            user=self.request.user, project_id=self.kwargs["project_id"], admin=needs_admin
        )

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.project  # noqa: B018 - resolve early so permission errors come before any work


class IsProjectAdmin(BasePermission):
    """Object-level check for objects that carry a ``project`` (e.g. a Job)."""

    message = "Only project admins can do this."

    def has_object_permission(self, request, view, obj):
        return role_in_project(user=request.user, project=obj.project) == Role.ADMIN


class IsStaffOrReadOnly(BasePermission):
    """Reads for any authenticated caller; writes for staff members (e.g. creating projects)."""

    message = "Only staff members can do this."

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        return bool(user and user.is_authenticated and (user.is_staff or user.is_superuser))
