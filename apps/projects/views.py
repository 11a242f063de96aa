from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.projects.charts import bar_chart
from apps.projects.forms import AddMemberForm, ProjectForm, RoleForm
from apps.projects.models import Role, TaskType
from apps.projects.selectors import (
    get_membership,
    get_project_for_user,
    project_members,
    projects_with_stats_for_user,
)
from apps.projects.services import (
    add_member,
    change_role,
    create_project,
    remove_member,
    update_project,
)


def _add_errors(form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form, next to the field it names."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
    else:
        for error in exc.messages:
            form.add_error(None, error)


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@login_required
@require_GET
def project_list(request):
    from apps.datasets.overview import with_example_counts

    user = request.user
    projects = with_example_counts(projects_with_stats_for_user(user=user))
    show_archived = request.GET.get("archived") == "1"
    archived_count = projects.filter(archived_at__isnull=False).count()
    return render(
        request,
        "projects/list.html",
        {
            "projects": projects.filter(archived_at__isnull=not show_archived),
            "can_create": user.is_staff or user.is_superuser,
            "show_archived": show_archived,
            "archived_count": archived_count,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request):
    if not (request.user.is_staff or request.user.is_superuser):
        raise PermissionDenied("Only staff members can create projects.")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = create_project(
                user=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                task_type=form.cleaned_data["task_type"],
                labels=form.cleaned_data["labels"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Project “{project.name}” created. Import its data next.")
            return redirect("projects:dashboard", project_id=project.pk)
    return render(
        request,
        "projects/create.html",
        {"form": form},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_GET
def dashboard(request, project_id: int):
    from apps.datasets.overview import project_overview

    project = get_project_for_user(user=request.user, project_id=project_id)
    if project.task_type == TaskType.PREFERENCE:  # pairs, weights and re-judgements instead
        from apps.alignment.views import project_dashboard

        return project_dashboard(request, project)
    overview = project_overview(project=project)
    return render(
        request,
        "projects/dashboard.html",
        {
            "project": project,
            "overview": overview,
            "is_admin": project.user_role == Role.ADMIN,
            "gold_chart": bar_chart(overview["gold_distribution"]),
            "label_chart": bar_chart(overview["label_distribution"]),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request, project_id: int):
    from apps.datasets.overview import project_has_examples

    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    locked = project_has_examples(project=project)
    form = ProjectForm(
        request.POST or None, initial=ProjectForm.initial_for(project), task_type_locked=locked
    )
    if request.method == "POST" and form.is_valid():
        try:
            update_project(
                project=project,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                task_type=None if locked else form.cleaned_data["task_type"],
                labels=form.cleaned_data["labels"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("projects:settings", project_id=project.pk)
    return render(
        request,
        "projects/settings.html",
        {"project": project, "form": form, "task_type_locked": locked},
        status=400 if request.method == "POST" else 200,
    )


def _members_response(
    request,
    project,
    *,
    add_form=None,
    error: str = "",
    status: int = 200,
    new_invite: str = "",
):
    from apps.accounts.models import Invite

    context = {
        "project": project,
        "memberships": project_members(project=project),
        "add_form": add_form or AddMemberForm(),
        "roles": Role.choices,
        "error": error,
        "invites": [
            invite
            for invite in Invite.objects.filter(project=project, used_at__isnull=True)[:50]
            if invite.state == "open"
        ],
        "new_invite": new_invite,
    }
    if request.htmx:
        # htmx swaps only 2xx responses: errors come back inside the region, with 200.
        return render(request, "projects/_members.html", context)
    return render(request, "projects/members.html", context, status=status)


def _members_done(request, project, message: str):
    if request.htmx:
        return _members_response(request, project)
    messages.success(request, message)
    return redirect("projects:members", project_id=project.pk)


def _left_admin_pages(request, membership) -> bool:
    """Whether the user just demoted themselves (the members page is closed to them now)."""
    return (
        membership.user_id == request.user.pk
        and membership.role != Role.ADMIN
        and not request.user.is_superuser
    )


def _redirect(request, message: str, url: str):
    """Leave the members page: a full redirect, also when the request came from htmx."""
    messages.success(request, message)
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_GET
def members(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    return _members_response(request, project)


@login_required
@require_POST
def member_add(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            membership = add_member(
                project=project,
                username=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _members_done(
                request,
                project,
                f"{membership.user.username} added as {membership.get_role_display().lower()}.",
            )
    return _members_response(request, project, add_form=form, status=400)


@login_required
@require_POST
def member_role(request, project_id: int, membership_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    membership = get_membership(project=project, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _members_response(request, project, error="Choose a valid role.", status=400)
    try:
        membership = change_role(membership=membership, role=form.cleaned_data["role"])
    except ValidationError as exc:
        return _members_response(request, project, error=_error_text(exc), status=400)
    message = f"{membership.user.username} is now {membership.get_role_display().lower()}."
    if _left_admin_pages(request, membership):
        return _redirect(request, message, reverse("projects:dashboard", args=[project.pk]))
    return _members_done(request, project, message)


@login_required
@require_POST
def member_remove(request, project_id: int, membership_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    membership = get_membership(project=project, membership_id=membership_id)
    try:
        remove_member(membership=membership)
    except ValidationError as exc:
        return _members_response(request, project, error=_error_text(exc), status=400)
    if membership.user_id == request.user.pk and not request.user.is_superuser:
        # You left the project: its pages are closed to you now.
        return _redirect(request, f"You left “{project.name}”.", reverse("projects:list"))
    return _members_done(request, project, f"{membership.user.username} removed from the project.")


@login_required
@require_POST
def member_invite(request, project_id: int):
    """A one-time invite link into this project (shown once, in the response)."""
    from apps.accounts import people
    from apps.accounts.people_views import invite_url

    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    raw_days = request.POST.get("days", str(people.INVITE_DAYS))
    try:
        _, secret = people.create_invite(
            by=request.user,
            project=project,
            role=request.POST.get("role", Role.ANNOTATOR),
            note=request.POST.get("note", ""),
            days=int(raw_days) if raw_days.isdigit() else raw_days,
        )
    except ValidationError as exc:
        return _members_response(request, project, error=_error_text(exc), status=400)
    return _members_response(request, project, new_invite=invite_url(request, secret))


@login_required
@require_POST
def member_invite_revoke(request, project_id: int, invite_id: int):
    from apps.accounts import people
    from apps.accounts.models import Invite

    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    invite = Invite.objects.filter(project=project, pk=invite_id).first()
    if invite is None:
        raise Http404("No such invite.")
    people.revoke_invite(invite=invite, by=request.user)
    return _members_done(request, project, "Invite revoked; its link no longer works.")


# --- archive and delete (project admins and staff) ------------------------------------------


def _managed_project(request, project_id: int):
    """The project if the user may archive/delete it; 404 for non-members, 403 for annotators."""
    from apps.projects import lifecycle
    from apps.projects.models import Project
    from apps.projects.selectors import role_in_project

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise Http404("No such project.")
    if lifecycle.can_manage(user=request.user, project=project):
        project.user_role = role_in_project(user=request.user, project=project) or Role.ADMIN
        return project
    if role_in_project(user=request.user, project=project) is None:
        raise Http404("No such project.")
    raise PermissionDenied("Only project admins and staff can archive or delete a project.")


@login_required
@require_POST
def project_archive(request, project_id: int):
    from apps.projects import lifecycle

    project = _managed_project(request, project_id)
    lifecycle.archive_project(project=project, user=request.user)
    messages.success(request, f"“{project.name}” is archived: hidden from the list and read-only.")
    return redirect("projects:dashboard", project_id=project.pk)


@login_required
@require_POST
def project_unarchive(request, project_id: int):
    from apps.projects import lifecycle

    project = _managed_project(request, project_id)
    lifecycle.unarchive_project(project=project, user=request.user)
    messages.success(request, f"“{project.name}” is active again.")
    return redirect("projects:dashboard", project_id=project.pk)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_delete(request, project_id: int):
    """Delete after the project's name is typed; shows what will go first."""
    from apps.datasets.overview import project_overview
    from apps.jobs.models import Artifact, Job
    from apps.projects import lifecycle

    project = _managed_project(request, project_id)
    error = ""
    if request.method == "POST":
        try:
            removed = lifecycle.delete_project(
                project=project, user=request.user, confirm_name=request.POST.get("name", "")
            )
        except ValidationError as exc:
            error = _error_text(exc)
        else:
            messages.success(
                request,
                f"Project “{project.name}” deleted: {removed['examples']:,} examples, "
                f"{removed['jobs']:,} jobs and {removed['artifacts']:,} stored artifacts.",
            )
            return redirect("projects:list")
    overview = project_overview(project=project)
    return render(
        request,
        "projects/delete.html",
        {
            "project": project,
            "error": error,
            "examples": overview["total"],
            "jobs": Job.objects.filter(project=project).count(),
            "artifacts": Artifact.objects.filter(project=project).count(),
        },
        status=400 if error else 200,
    )
