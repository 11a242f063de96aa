"""Agreement pages (project admins): the overlap setting and agreement figures, and the
conflicts view where an admin decides examples whose annotators disagree (keyboard-first)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from apps.agreement import selectors, services
from apps.datasets.highlight import highlight_entities
from apps.datasets.selectors import example_for_project
from apps.datasets.services import label_name
from apps.projects.selectors import get_project_for_user


@login_required
@require_http_methods(["GET", "HEAD"])
def agreement(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    k = services.overlap_for(project=project)
    report = selectors.agreement_report(project=project)
    return render(
        request,
        "agreement/agreement.html",
        {
            "project": project,
            "k": k,
            "max_k": services.MAX_OVERLAP,
            "report": report,
            "conflicts": len(selectors.conflict_ids(project=project, k=k)),
            "waiting": selectors.waiting_count(project=project, k=k),
        },
    )


@login_required
@require_POST
def overlap(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    raw = request.POST.get("k", "")
    try:
        done = services.set_overlap(
            project=project, k=int(raw) if raw.strip().isdigit() else raw, user=request.user
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        k = services.overlap_for(project=project)
        text = (
            "Each example now needs one label (no overlap)."
            if k == 1
            else f"Each example now needs {k} labels from different annotators."
        )
        if done:
            text += f" {done} example(s) already had {k} agreeing labels and became gold."
        messages.success(request, text)
    return redirect("agreement:agreement", project_id=project.pk)


def _conflict_context(request, project, *, notice: str = "", level: str = "info") -> dict:
    k = services.overlap_for(project=project)
    ids = selectors.conflict_ids(project=project, k=k)
    skipped = request.session.get("conflict_skipped", {}).get(str(project.pk), [])
    remaining = [i for i in ids if i not in skipped] or ids
    example = example_for_project(project=project, example_id=remaining[0]) if remaining else None
    votes = selectors.votes_for(example=example) if example else []
    counts: dict[int, list[str]] = {}
    for vote in votes:
        counts.setdefault(vote["label"], []).append(vote["user"])
    labels = [
        {
            "index": index,
            "name": name,
            "key": str(index + 1) if index < 9 else "",
            "voters": counts.get(index, []),
        }
        for index, name in enumerate(project.labels or [])
    ]
    return {
        "project": project,
        "example": example,
        "text": highlight_entities(example.text, example.entities) if example else "",
        "labels": labels,
        "count": len(ids),
        "others": [i for i in ids if example is None or i != example.pk][:50],
        "notice": notice,
        "notice_level": level,
        "conflicts_url": reverse("agreement:conflicts", args=[project.pk]),
    }


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def conflicts(request, project_id: int):
    """One conflict at a time: number keys decide, ``s`` skips."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    notice, level = "", "info"
    if request.method == "POST":
        notice, level = _decide(request, project)
        if not request.htmx:
            if notice:
                messages.add_message(
                    request, messages.ERROR if level == "error" else messages.SUCCESS, notice
                )
            return redirect("agreement:conflicts", project_id=project.pk)
    context = _conflict_context(request, project, notice=notice, level=level)
    template = "agreement/conflicts.html" + ("#card" if request.htmx else "")
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _decide(request, project) -> tuple[str, str]:
    raw_id = request.POST.get("example_id", "")
    example = (
        example_for_project(project=project, example_id=int(raw_id)) if raw_id.isdigit() else None
    )
    if example is None:
        return "That example is not in this project (any more).", "error"
    if request.POST.get("action") == "skip":
        skipped = request.session.setdefault("conflict_skipped", {}).setdefault(str(project.pk), [])
        if example.pk not in skipped:
            skipped.append(example.pk)
            del skipped[:-500]
        request.session.modified = True
        return "", "info"
    raw = request.POST.get("label", "")
    try:
        services.adjudicate(
            project=project,
            example=example,
            label=int(raw) if raw.isdigit() else raw,
            user=request.user,
        )
    except (ValidationError, PermissionDenied) as error:
        return " ".join(getattr(error, "messages", [str(error)])), "error"
    return f"Example {example.external_id}: gold label {label_name(project, int(raw))}.", "success"
