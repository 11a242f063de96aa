"""People pages: staff manage accounts (/accounts/people/); anyone with an invite link joins.

Project admins invite into their project from its members page (apps.projects.views).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import people
from apps.accounts.models import Invite
from apps.projects.models import Project, Role


def _require_staff(request) -> None:
    if not people.is_staff(request.user):
        raise PermissionDenied("Only staff members manage accounts.")


def invite_url(request, secret: str) -> str:
    return request.build_absolute_uri(reverse("accounts:invite_accept", args=[secret]))


def _messages_of(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _people_page(request, *, created=None, password="", new_invite="", status=200):
    users = (
        get_user_model()
        .objects.annotate(project_count=Count("memberships", distinct=True))
        .order_by("-is_active", "username")
    )
    return render(
        request,
        "accounts/people.html",
        {
            "users": users,
            "invites": Invite.objects.select_related("project", "created_by", "used_by")[:100],
            "projects": Project.objects.order_by("name", "id"),
            "roles": Role.choices,
            "created": created,
            "password": password,
            "new_invite": new_invite,
            "invite_days": people.INVITE_DAYS,
        },
        status=status,
    )


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def people_list(request):
    _require_staff(request)
    return _people_page(request)


def _project_from_post(request) -> Project | None:
    raw = request.POST.get("project", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationError("Choose a project from the list.")
    project = Project.objects.filter(pk=int(raw)).first()
    if project is None:
        raise ValidationError("That project does not exist.")
    return project


@never_cache
@login_required
@require_POST
def user_create(request):
    """Create an account with a one-time password, shown on this response only."""
    _require_staff(request)
    try:
        user, password = people.create_user_with_password(
            by=request.user,
            username=request.POST.get("username", ""),
            project=_project_from_post(request),
            role=request.POST.get("role", Role.ANNOTATOR),
        )
    except ValidationError as exc:
        messages.error(request, _messages_of(exc))
        return redirect("accounts:people")
    return _people_page(request, created=user, password=password)


@never_cache
@login_required
@require_POST
def invite_create(request):
    _require_staff(request)
    raw_days = request.POST.get("days", str(people.INVITE_DAYS))
    try:
        invite, secret = people.create_invite(
            by=request.user,
            project=_project_from_post(request),
            role=request.POST.get("role", Role.ANNOTATOR),
            note=request.POST.get("note", ""),
            days=int(raw_days) if raw_days.isdigit() else raw_days,
        )
    except ValidationError as exc:
        messages.error(request, _messages_of(exc))
        return redirect("accounts:people")
    return _people_page(request, new_invite=invite_url(request, secret))


@login_required
@require_POST
def user_active(request, user_id: int):
    _require_staff(request)
    user = get_object_or_404(get_user_model(), pk=user_id)
    active = request.POST.get("active") == "1"
    try:
        people.set_active(by=request.user, user=user, active=active)
    except ValidationError as exc:
        messages.error(request, _messages_of(exc))
    else:
        messages.success(
            request, f"{user.username} {'can log in again' if active else 'is deactivated'}."
        )
    return redirect("accounts:people")


@login_required
@require_POST
def invite_revoke(request, invite_id: int):
    _require_staff(request)
    invite = get_object_or_404(Invite, pk=invite_id)
    people.revoke_invite(invite=invite, by=request.user)
    messages.success(request, "Invite revoked; its link no longer works.")
    return redirect("accounts:people")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def invite_accept(request, token: str):
    """Public: the invite link. Choose a username and password; then you are logged in."""
    invite = people.open_invite(secret=token)
    errors: dict = {}
    username = ""
    if request.method == "POST" and invite is not None:
        username = request.POST.get("username", "")
        password = request.POST.get("password", "")
        if password != request.POST.get("password2", ""):
            errors = {"password": ["The two passwords differ."]}
        else:
            try:
                user = people.accept_invite(secret=token, username=username, password=password)
            except ValidationError as exc:
                errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, f"Welcome, {user.username}. Your account is ready.")
                if invite.project_id:
                    return redirect("projects:dashboard", project_id=invite.project_id)
                return redirect("projects:list")
    return render(
        request,
        "accounts/invite_accept.html",
        {"invite": invite, "errors": errors, "username": username},
        status=400 if errors else 200,
    )
