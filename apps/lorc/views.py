"""The LoRC page: compressed models of the project's LM, memory saved and quality kept.

Members see it; admins launch a calibration and switch the proposer to a compressed model.
One htmx region (``lorc/_panel.html``) is swapped after each action and polled while a job runs.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.lorc import kinds, selectors, services
from apps.projects.models import Role
from apps.projects.selectors import get_project_for_user


def _context(project, *, error: str | None = None) -> dict:
    return {
        "project": project,
        "is_admin": project.user_role == Role.ADMIN,
        "models": list(selectors.compressed_lms(project=project)[:20]),
        "active_job": selectors.active_job(project=project),
        "proposer_model": selectors.proposer_model(project=project),
        "proposer_uses_lorc": selectors.proposer_uses_lorc(project=project),
        "defaults": kinds.DEFAULTS,
        "action_error": error,
    }


@login_required
@require_GET
def page(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id)
    template = "lorc/_panel.html" if request.htmx else "lorc/page.html"
    return render(request, template, _context(project))


def _after(request, project, *, error: str | None, success: str | None):
    if request.htmx:
        return render(request, "lorc/_panel.html", _context(project, error=error))
    if error:
        messages.error(request, error)
    elif success:
        messages.success(request, success)
    return redirect("lorc:page", project_id=project.pk)


@login_required
@require_POST
def launch(request, project_id: int):
    """Launch "calibrate LoRC" (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    params = {k: request.POST[k] for k in ("bits", "ceiling") if request.POST.get(k)}
    try:
        job = services.launch_calibration(project=project, user=request.user, params=params)
    except ValidationError as exc:
        return _after(request, project, error=" ".join(exc.messages), success=None)
    return _after(
        request, project, error=None, success=f"Launched LoRC calibration (job #{job.pk})."
    )


@login_required
@require_POST
def proposer(request, project_id: int):
    """Switch the PRBoost proposer to a compressed model, or back (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    try:
        if request.POST.get("use") == "off":
            services.stop_using_for_proposer(project=project, user=request.user)
            done = "The proposer uses the uncompressed model again."
        else:
            raw = request.POST.get("model", "")
            compressed = (
                selectors.compressed_lms(project=project).filter(pk=int(raw)).first()
                if raw.isdigit()
                else None
            )
            if compressed is None:
                raise ValidationError("Choose one of this project's compressed models.")
            services.use_for_proposer(project=project, user=request.user, compressed=compressed)
            done = f"The proposer's next warm-up runs on LoRC model #{compressed.pk}."
    except ValidationError as exc:
        return _after(request, project, error=" ".join(exc.messages), success=None)
    return _after(request, project, error=None, success=done)
