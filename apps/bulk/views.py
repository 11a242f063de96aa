"""Bulk actions (project admins): choose → confirm (with the count) → done, and undo."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.bulk import services
from apps.bulk.models import BulkAction
from apps.datasets.models import Split
from apps.jobs.models import Job
from apps.projects.selectors import get_project_for_user


def _context(project, filters: dict, **extra) -> dict:
    query = urlencode(filters)
    return {
        "project": project,
        "filters": filters,
        "filter_items": list(filters.items()),
        "labels": list(enumerate(project.labels or [])),
        "splits": Split.choices,
        "limit": services.bulk_limit(),
        "job_limit": services.bulk_job_limit(),
        "examples_url": reverse("datasets:examples", args=[project.pk])
        + (f"?{query}" if query else ""),
        **extra,
    }


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def bulk(request, project_id: int):
    """GET: the action form for the filter in the query. POST: the confirmation step (with
    ``step=confirm``) or the action itself (``step=run``)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    data = request.POST if request.method == "POST" else request.GET
    try:
        filters = services.clean_filters(project=project, data=data)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("datasets:examples", project_id=project.pk)
    if request.method != "POST":
        return render(request, "bulk/choose.html", _context(project, filters))
    # Field names of their own: "label" and "split" are filter names (the selection).
    kind = request.POST.get("bulk_kind", "")
    value = request.POST.get("bulk_label" if kind == "label" else "bulk_split", "")
    replace_gold = request.POST.get("replace_gold") == "on"
    try:
        plan = services.plan_bulk(
            project=project, filters=filters, kind=kind, value=value, replace_gold=replace_gold
        )
    except ValidationError as exc:
        return render(
            request,
            "bulk/choose.html",
            _context(project, filters, error=" ".join(exc.messages)),
            status=400,
        )
    if request.POST.get("step") != "run":
        return render(
            request,
            "bulk/confirm.html",
            _context(project, filters, plan=plan, what=plan.describe(project)),
        )
    raw_expected = request.POST.get("expected", "")
    try:
        action = services.apply_bulk(
            project=project,
            user=request.user,
            filters=filters,
            kind=kind,
            value=value,
            replace_gold=replace_gold,
            expected=int(raw_expected) if raw_expected.isdigit() else -1,
        )
    except ValidationError as exc:
        return render(
            request,
            "bulk/confirm.html",
            _context(
                project,
                filters,
                plan=plan,
                what=plan.describe(project),
                error=" ".join(exc.messages),
            ),
            status=400,
        )
    if isinstance(action, Job):
        messages.success(
            request,
            f"Started: {plan.describe(project)} on {plan.count:,} examples runs as job "
            f"#{action.pk} (all or nothing); this page shows its progress.",
        )
        return redirect("jobs:detail", job_id=action.pk)
    messages.success(
        request, f"Done: {plan.describe(project)} on {action.count:,} examples. Undo it below."
    )
    return redirect("bulk:history", project_id=project.pk)


@login_required
@require_http_methods(["GET", "HEAD"])
def history(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    actions = BulkAction.objects.filter(project=project).select_related("user")[:50]
    rows = []
    for action in actions:
        what = (
            services.label_name(project, int(action.value))
            if action.kind == "label"
            else action.value
        )
        rows.append({"action": action, "what": what})
    return render(request, "bulk/history.html", {"project": project, "rows": rows})


@login_required
@require_POST
def undo(request, project_id: int, action_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    action = get_object_or_404(BulkAction, project=project, pk=action_id)
    try:
        restored = services.request_undo(action=action, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if isinstance(restored, Job):
            messages.success(
                request,
                f"Undoing {action.count:,} examples runs as job #{restored.pk} (all or "
                "nothing); this page shows its progress.",
            )
            return redirect("jobs:detail", job_id=restored.pk)
        skipped = action.count - restored
        text = f"Undone: {restored:,} examples restored."
        if skipped:
            text += f" {skipped:,} were changed since and kept their newer values."
        messages.success(request, text)
    return redirect("bulk:history", project_id=project.pk)
