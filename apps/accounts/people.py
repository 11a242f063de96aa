"""People management without Django's admin: invites, one-time passwords, (de)activation.

Who may do what:

- Staff (and superusers) manage accounts: create a user with a one-time password, invite
  someone to the site or to any project, deactivate and reactivate accounts.
- Project admins manage their project's people: invite someone into their project (with a
  role), revoke those invites; roles and removal are on the members page (apps.projects).

An invite link carries a random secret; only its SHA-256 digest is stored. It works once,
until it expires (``INVITE_DAYS``) or is revoked. A one-time password is shown once, to the
staff member who created the account, and never stored in clear.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.authentication import token_digest
from apps.accounts.models import Invite
from apps.projects.models import Membership, Role
from apps.projects.selectors import role_in_project

INVITE_DAYS = 7
MAX_INVITE_DAYS = 30
INVITE_PREFIX = "inv_"
USERNAME_MAX = 150


def is_staff(user) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def _require_staff(user) -> None:
    if not is_staff(user):
        raise PermissionDenied("Only staff members manage accounts.")


def can_invite(*, user, project=None) -> bool:
    if is_staff(user):
        return True
    return project is not None and role_in_project(user=user, project=project) == Role.ADMIN


def create_invite(
    *, by, project=None, role: str = Role.ANNOTATOR, note: str = "", days: int = INVITE_DAYS
) -> tuple[Invite, str]:
    """A new invite and its secret (put it in the link; it is not stored)."""
    if not can_invite(user=by, project=project):
        raise PermissionDenied("Only project admins and staff can invite people.")
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_INVITE_DAYS:
        raise ValidationError(f"An invite lasts 1 to {MAX_INVITE_DAYS} days.")
    note = (note or "").strip()[:200]
    secret = INVITE_PREFIX + secrets.token_urlsafe(24)
    invite = Invite.objects.create(
        digest=token_digest(secret),
        prefix=secret[:12],
        note=note,
        project=project,
        role=role,
        created_by=by,
        expires_at=timezone.now() + timedelta(days=days),
    )
    return invite, secret


def open_invite(*, secret: str) -> Invite | None:
    """The invite a link's secret opens, while it is open (unused, unexpired, not revoked)."""
    if not isinstance(secret, str) or not secret.startswith(INVITE_PREFIX) or len(secret) > 100:
        return None
    invite = Invite.objects.filter(digest=token_digest(secret)).select_related("project").first()
    return invite if invite is not None and invite.state == "open" else None


def accept_invite(*, secret: str, username: str, password: str):
    """Create the account the invite allows (and its membership); the invite is used up."""
    username = (username or "").strip()
    User = get_user_model()
    if not username or len(username) > USERNAME_MAX:
        raise ValidationError({"username": "Choose a username (up to 150 characters)."})
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from exc
    candidate = User(username=username)
    try:
        validate_password(password or "", user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    with transaction.atomic():
        invite = (
            Invite.objects.select_for_update(of=("self",))
            .filter(digest=token_digest(secret or ""))
            .select_related("project")
            .first()
        )
        if invite is None or invite.state != "open":
            raise ValidationError("This invite link is no longer valid; ask for a new one.")
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": "That username is taken; choose another."})
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=username, password=password)
        except IntegrityError as exc:
            raise ValidationError({"username": "That username is taken; choose another."}) from exc
        if invite.project_id:
            Membership.objects.create(project=invite.project, user=user, role=invite.role)
        invite.used_at = timezone.now()
        invite.used_by = user
        invite.save(update_fields=["used_at", "used_by"])
    return user


def revoke_invite(*, invite: Invite, by) -> Invite:
    if not can_invite(user=by, project=invite.project):
        raise PermissionDenied("Only project admins and staff can revoke invites.")
    if invite.state == "open":
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])
    return invite


def create_user_with_password(*, by, username: str, project=None, role: str = Role.ANNOTATOR):
    """Staff create an account; returns ``(user, password)`` — the password is shown once."""
    _require_staff(by)
    User = get_user_model()
    username = (username or "").strip()
    if not username or len(username) > USERNAME_MAX:
        raise ValidationError({"username": "Choose a username (up to 150 characters)."})
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from exc
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": "That username is taken; choose another."})
        user = User.objects.create_user(username=username, password=password)
        if project is not None:
            Membership.objects.create(project=project, user=user, role=role)
    return user, password


def set_active(*, by, user, active: bool):
    """Deactivate (no login, no API tokens, sessions end) or reactivate an account."""
    _require_staff(by)
    if user.pk == by.pk and not active:
        raise ValidationError("You cannot deactivate your own account.")
    if user.is_superuser and not by.is_superuser:
        raise PermissionDenied("Only superusers can deactivate a superuser.")
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
    return user
