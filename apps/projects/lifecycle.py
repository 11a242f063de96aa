"""Archive, unarchive and delete a project.

Who: the project's admins and staff (superusers included). Archiving is reversible and keeps
everything; an archived project is hidden from the project lists (shown under "Archived") and
read-only: every write to its pages and API is refused (``ArchivedReadOnlyMiddleware``) except
unarchive and delete. Deleting removes its examples, rules, jobs, stored artifacts (files
included) and memberships; it asks for the project's name typed exactly, and waits until no job
of the project is queued or running.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project

DELETE_CHUNK = 5_000


def can_manage(*, user, project: Project) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return role_in_project(user=user, project=project) == Role.ADMIN


def _require(user, project) -> None:
    if not can_manage(user=user, project=project):
        raise PermissionDenied("Only project admins and staff can archive or delete a project.")


def archive_project(*, project: Project, user) -> Project:
    _require(user, project)
    if project.archived_at is None:
        project.archived_at = timezone.now()
        project.save(update_fields=["archived_at"])
    return project


def unarchive_project(*, project: Project, user) -> Project:
    _require(user, project)
    if project.archived_at is not None:
        project.archived_at = None
        project.save(update_fields=["archived_at"])
    return project


def delete_project(*, project: Project, user, confirm_name: str) -> dict:
    """Delete the project and everything of it; returns what was removed (counts)."""
    from apps.datasets.models import Example
    from apps.jobs.artifacts import delete_artifact
    from apps.jobs.models import Artifact, Job, JobStatus

    _require(user, project)
    if (confirm_name or "").strip() != project.name:
        raise ValidationError("Type the project's name exactly to delete it; nothing was deleted.")
    active = Job.objects.filter(
        project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).count()
    if active:
        raise ValidationError(
            f"{active} job(s) of this project are queued or running: cancel them (or wait) "
            "first; nothing was deleted."
        )
    removed = {"artifacts": 0, "examples": 0, "jobs": 0}
    for artifact in Artifact.objects.filter(project=project):
        delete_artifact(artifact)  # the stored file, then the row
        removed["artifacts"] += 1
    # Examples go in chunks so a million rows never sit in one cascade collection.
    examples = Example.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    while True:
        chunk = list(examples[:DELETE_CHUNK])
        if not chunk:
            break
        with transaction.atomic():
            Example.objects.filter(id__in=chunk).delete()
        removed["examples"] += len(chunk)
    with transaction.atomic():
        removed["jobs"] = Job.objects.filter(project=project).count()
        project.delete()
    return removed
