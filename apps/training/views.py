"""The PRBoost dashboard (htmx): rounds, plots, ensemble, live job progress and logs, actions,
and the PRBoost settings page with a template preview on a real example."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.frugal import safe_json
from apps.jobs.models import FINISHED_STATUSES
from apps.jobs.services import request_cancel
from apps.projects.models import Role
from apps.projects.selectors import get_project_for_user
from apps.training import kinds, selectors, services
from apps.training.charts import round_charts
from apps.training.forms import PRBoostSettingsForm
from apps.training.prboost_settings import (
    PROPOSER_LABELS,
    default_templates,
    prboost_settings,
)

# The dashboard's buttons: form value -> job kind.
ACTIONS = {
    "warm": kinds.WARM_CACHE,
    "round": kinds.RUN_ROUND,
    "refresh": kinds.REFRESH_LABELS,
    "finalize": kinds.FINALIZE,
}
LOG_LINES = 40


def _dashboard_context(request, project, *, action_error: str | None = None) -> dict:
    live = selectors.live_rounds_of(project=project)
    jobs = selectors.training_jobs(project=project)
    active = next((j for j in jobs if j.status not in FINISHED_STATUSES), None)
    shown_job = active or (jobs[0] if jobs else None)
    log_tail = ""
    if shown_job is not None:
        log_tail = "\n".join(shown_job.log.rstrip("\n").splitlines()[-LOG_LINES:])
    current = live[-1] if live else None
    total_alpha = sum(max(r.alpha or 0.0, 0.0) for r in live) or 1.0
    members = [{"round": r, "share": 100 * max(r.alpha or 0.0, 0.0) / total_alpha} for r in live]
    prb = prboost_settings(project)
    return {
        "project": project,
        "is_admin": project.user_role == Role.ADMIN,
        "current": current,
        "rounds": list(selectors.rounds_of(project=project)),
        "members": members,
        "charts": round_charts(live) if live else [],
        "rule_counts": services.rule_counts(project=project),
        "active_job": active,
        "shown_job": shown_job,
        "log_tail": log_tail,
        "label_set": services.latest_label_set(project=project),
        "prb": prb,
        "proposer_label": PROPOSER_LABELS.get(prb["proposer"], prb["proposer"]),
        "action_error": action_error,
        "actions": [
            ("warm", "Warm cache", kinds.LAUNCHABLE[kinds.WARM_CACHE][1], ""),
            ("round", "Run round", kinds.LAUNCHABLE[kinds.RUN_ROUND][1], ""),
            ("refresh", "Refresh labels", kinds.LAUNCHABLE[kinds.REFRESH_LABELS][1], ""),
            ("finalize", "Finalize", kinds.LAUNCHABLE[kinds.FINALIZE][1], FINALIZE_CONFIRM),
        ],
    }


FINALIZE_CONFIRM = (
    "Finalize? The final model is trained from the latest round and its labels replace the "
    "rule labels on the pool (gold labels are kept). Later rounds and a new finalize can follow."
)


@login_required
@require_GET
def dashboard(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id)
    context = _dashboard_context(request, project)
    if request.htmx:
        return render(request, "training/_dashboard.html", context)
    return render(request, "training/dashboard.html", context)


def _after_action(request, project, *, error: str | None, success: str | None):
    if request.htmx:
        return render(
            request,
            "training/_dashboard.html",
            _dashboard_context(request, project, action_error=error),
        )
    if error:
        messages.error(request, error)
    elif success:
        messages.success(request, success)
    return redirect("training:dashboard", project_id=project.pk)


@login_required
@require_POST
def launch(request, project_id: int):
    """Launch warm cache / run round / refresh labels / finalize (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    kind = ACTIONS.get(request.POST.get("action", ""))
    if kind is None:
        return _after_action(
            request,
            project,
            error="Unknown action: use warm, round, refresh or finalize.",
            success=None,
        )
    params = None
    if kind == kinds.REFRESH_LABELS:
        params = {"overwrite_model_labels": request.POST.get("overwrite_model_labels") == "1"}
    try:
        job = services.launch_training_job(
            project=project, user=request.user, kind=kind, params=params
        )
    except ValidationError as exc:
        return _after_action(request, project, error=" ".join(exc.messages), success=None)
    return _after_action(
        request,
        project,
        error=None,
        success=f"Launched {kinds.LAUNCHABLE[kind][0].lower()} (job #{job.pk}).",
    )


@login_required
@require_POST
def cancel(request, project_id: int):
    """Cancel the project's running training job (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    job = services.active_training_job(project=project)
    if job is None:
        return _after_action(request, project, error="No training job is running.", success=None)
    try:
        request_cancel(job=job, user=request.user)
    except ValidationError as exc:
        return _after_action(request, project, error=" ".join(exc.messages), success=None)
    return _after_action(
        request, project, error=None, success=f"Cancel requested for job #{job.pk}."
    )


@login_required
@require_http_methods(["GET", "POST"])
def settings_view(request, project_id: int):
    """PRBoost settings of the project (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    prb = prboost_settings(project)
    defaults = default_templates(task_type=project.task_type, proposer=prb["proposer"])
    if request.method == "POST":
        form = PRBoostSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.update_prboost_settings(
                    project=project, user=request.user, data=form.cleaned_data
                )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.message_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, exc.messages)
            else:
                messages.success(request, "PRBoost settings saved.")
                return redirect("training:settings", project_id=project.pk)
    else:
        form = PRBoostSettingsForm(initial=PRBoostSettingsForm.initial_from(prb, defaults))
    previews = _previews(project, form["templates"].value() or "")
    return render(
        request,
        "training/settings.html",
        {"project": project, "form": form, "previews": previews},
    )


def _previews(project, raw: str) -> list[dict]:
    import json

    raw = raw.strip()
    if not raw:
        prb = prboost_settings(project)
        templates = default_templates(task_type=project.task_type, proposer=prb["proposer"])
    else:
        try:
            templates = safe_json.loads(raw)
        except json.JSONDecodeError as exc:
            return [{"id": "", "prompt": "", "error": f"Not valid JSON: {exc.msg}."}]
        if not isinstance(templates, list):
            return [{"id": "", "prompt": "", "error": "Give a JSON list of templates."}]
    out = []
    for template in templates[:10]:
        preview = services.template_preview(
            project=project,
            template={**template, "task_type": template.get("task_type", project.task_type)}
            if isinstance(template, dict)
            else template,
        )
        out.append({"id": template.get("id", "") if isinstance(template, dict) else "", **preview})
    return out


@login_required
@require_POST
def template_preview(request, project_id: int):
    """The templates typed in the settings form, rendered on a real example (htmx, admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    previews = _previews(project, request.POST.get("templates", ""))
    return render(request, "training/_template_preview.html", {"previews": previews})
