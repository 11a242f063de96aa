"""Moved to :mod:`apps.projects.permissions` (they read project membership).

Only ``apps/training/api.py`` still imports this name; it goes when that import changes to
``apps.projects.permissions`` (tests/test_architecture.py lists this file as the last back edge
of ``apps.api`` → ``apps.projects``).
"""

from apps.projects.permissions import IsProjectAdmin, IsStaffOrReadOnly, ProjectScopedMixin

__all__ = ["IsProjectAdmin", "IsStaffOrReadOnly", "ProjectScopedMixin"]
