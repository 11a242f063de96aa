"""Writes for projects and their members.

Every function takes keyword-only arguments, validates with ``full_clean()`` and raises
``ValidationError`` with a message a person can act on; on error nothing is changed. Who may
call them (staff for creation, project admins for the rest) is checked by the views through
``apps.projects.selectors``; creation checks staff itself because it has no project to scope.
"""

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.projects.models import Membership, Project, Role, TaskType

MAX_LABEL_LENGTH = 100
MAX_LABELS = 1000


def parse_labels(text: str) -> list[str]:
    """Labels typed in a form: one per line, or comma-separated on a single line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) == 1:
        return [part.strip() for part in lines[0].split(",") if part.strip()]
    return lines


def clean_labels(labels) -> list[str]:
    """Stripped label names; raises ValidationError for empty, duplicate or too many labels."""
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        raise ValidationError({"labels": "Labels must be a list of names."})
    cleaned = []
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str):
            raise ValidationError({"labels": f"Label {label!r} is not text."})
        name = label.strip()
        if not name:
            raise ValidationError({"labels": "A label name cannot be empty."})
        if len(name) > MAX_LABEL_LENGTH:
            raise ValidationError(
                {"labels": f"Label “{name[:30]}…” is longer than {MAX_LABEL_LENGTH} characters."}
            )
        if re.search(r"[\r\n]", name):
            raise ValidationError({"labels": f"Label “{name}” contains a line break."})
        key = name.casefold()
        if key in seen:
            raise ValidationError(
                {"labels": f"Label “{name}” appears twice (as “{seen[key]}” too)."}
            )
        seen[key] = name
        cleaned.append(name)
    if len(cleaned) < 2:
        raise ValidationError({"labels": "A project needs at least two labels."})
    if len(cleaned) > MAX_LABELS:
        raise ValidationError({"labels": f"A project can have at most {MAX_LABELS} labels."})
    return cleaned


def _labels_for(task_type: str, labels) -> list[str]:
    """Preference projects need no labels (pairs carry their own judgement): empty is fine."""
    if task_type == TaskType.PREFERENCE and not labels:
        return []
    return clean_labels(labels)


def _check_label_change(*, project: Project, old: list[str], new: list[str]) -> None:
    """Refuse removing, renaming or moving a label that examples already refer to by index."""
    from apps.datasets.overview import labels_in_use, project_has_rule_votes

    used = labels_in_use(project=project)
    votes = project_has_rule_votes(project=project)
    for index, name in enumerate(old):
        count = used.get(index, 0)
        if not count and not votes:
            continue
        if index < len(new) and new[index] == name:
            continue
        if count == 1:
            reason = f"1 example is labeled “{name}”"
        elif count:
            reason = f"{count} examples are labeled “{name}”"
        else:
            reason = f"imported rule votes refer to “{name}” by its position"
        where = (
            "it is missing from the new list"
            if name not in new
            else f"it moved from position {index + 1} to {new.index(name) + 1}"
        )
        raise ValidationError(
            {
                "labels": (
                    f"Label “{name}” cannot be removed, renamed or moved: {reason}, and {where}. "
                    "Keep the labels in use in their places; you can add new labels at the end."
                )
            }
        )


@transaction.atomic
def create_project(
    *,
    user,
    name: str,
    labels: list[str],
    task_type: str = TaskType.TEXT_CLASSIFICATION,
    description: str = "",
) -> Project:
    """Create a project; its creator (staff only) becomes its first admin."""
    if not (user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser)):
        raise PermissionDenied("Only staff members can create projects.")
    project = Project(
        name=(name or "").strip(),
        description=(description or "").strip(),
        task_type=task_type,
        labels=_labels_for(task_type, labels),
        created_by=user,
    )
    project.full_clean()
    project.save()
    membership = Membership(project=project, user=user, role=Role.ADMIN)
    membership.full_clean()
    membership.save()
    return project


@transaction.atomic
def update_project(
    *,
    project: Project,
    name: str | None = None,
    description: str | None = None,
    task_type: str | None = None,
    labels: list[str] | None = None,
) -> Project:
    """Change a project's name, description, task type or labels (``None`` = keep).

    Labels that examples use keep their name and position; the task type is fixed once the
    project has examples.
    """
    from apps.datasets.overview import project_has_examples

    locked = Project.objects.select_for_update().get(pk=project.pk)
    if name is not None:
        locked.name = name.strip()
    if description is not None:
        locked.description = description.strip()
    if task_type is not None and task_type != locked.task_type:
        if project_has_examples(project=locked):
            raise ValidationError(
                {
                    "task_type": (
                        "The task type cannot change once the project has examples "
                        f"(it is {locked.get_task_type_display().lower()})."
                    )
                }
            )
        locked.task_type = task_type
    if labels is not None:
        new_labels = _labels_for(locked.task_type, labels)
        if new_labels != list(locked.labels):
            _check_label_change(project=locked, old=list(locked.labels), new=new_labels)
        locked.labels = new_labels
    locked.full_clean()
    fields = ["name", "description", "task_type", "labels"]
    # Only these fields: the method settings are someone else's to write.
    locked.save(update_fields=fields)
    # Callers keep using the object they passed in.
    for field in fields:
        setattr(project, field, getattr(locked, field))
    return project


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationError(
            {"role": f"Unknown role “{role}”; choose one of: {', '.join(Role.values)}."}
        )


def _lock_project(project_id: int) -> None:
    """Serialize membership changes of one project (a row lock on the project).

    Without it two admins demoting each other at once could both see "another admin remains"
    and leave the project with none. Every membership change takes this lock first, so the
    order of locks is always the same and they cannot deadlock.
    """
    Project.objects.select_for_update().filter(pk=project_id).values_list("pk").first()


def _current(membership: Membership) -> Membership:
    current = Membership.objects.select_related("user").filter(pk=membership.pk).first()
    if current is None:
        raise ValidationError("This person is no longer a member of the project.")
    return current


def _admin_count(project_id: int) -> int:
    return Membership.objects.filter(project_id=project_id, role=Role.ADMIN).count()


@transaction.atomic
def add_member(*, project: Project, username: str, role: str = Role.ANNOTATOR) -> Membership:
    """Add an existing user, found by username, to the project with a role."""
    _check_role(role)
    _lock_project(project.pk)
    username = (username or "").strip()
    if not username:
        raise ValidationError({"username": "Enter the username of the person to add."})
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        matches = list(User.objects.filter(username__iexact=username)[:2])
        user = matches[0] if len(matches) == 1 else None
    if user is None or not user.is_active:
        raise ValidationError(
            {
                "username": (
                    f"There is no active user named “{username}”. "
                    "Accounts are created by a site administrator."
                )
            }
        )
    existing = Membership.objects.filter(project=project, user=user).first()
    if existing is not None:
        raise ValidationError(
            {
                "username": (
                    f"{user.username} is already a member ({existing.get_role_display().lower()}); "
                    "change their role in the list instead."
                )
            }
        )
    membership = Membership(project=project, user=user, role=role)
    membership.full_clean()
    membership.save()
    return membership


@transaction.atomic
def change_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role; the project's last admin cannot be demoted."""
    _check_role(role)
    _lock_project(membership.project_id)
    locked = _current(membership)
    if locked.role == role:
        return locked
    if locked.role == Role.ADMIN and _admin_count(locked.project_id) <= 1:
        raise ValidationError(
            {
                "role": (
                    f"{locked.user.username} is the project's last admin; "
                    "make someone else admin first."
                )
            }
        )
    locked.role = role
    locked.full_clean()
    locked.save(update_fields=["role"])
    membership.role = role
    return locked


@transaction.atomic
def remove_member(*, membership: Membership) -> None:
    """Remove a member from the project; the project's last admin cannot be removed."""
    _lock_project(membership.project_id)
    locked = _current(membership)
    if locked.role == Role.ADMIN and _admin_count(locked.project_id) <= 1:
        raise ValidationError(
            {
                "user": (
                    f"{locked.user.username} is the project's last admin and cannot be removed; "
                    "make someone else admin first."
                )
            }
        )
    locked.delete()
