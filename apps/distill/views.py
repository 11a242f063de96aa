"""The distillation page (htmx): launch form (admins), live job, comparison table and plot,
the serving student and its download."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.distill import kinds, selectors, services
from apps.distill.charts import accuracy_chart
from apps.jobs.artifacts import open_artifact
from apps.jobs.models import FINISHED_STATUSES
from apps.jobs.services import request_cancel
from apps.projects.models import Role
from apps.projects.selectors import get_project_for_user
from models.ptloss.loss import LOSSES

LOG_LINES = 30


def _context(project, *, error: str | None = None) -> dict:
    jobs = selectors.distill_jobs(project=project)
    active = next((j for j in jobs if j.status not in FINISHED_STATUSES), None)
    shown = active or (jobs[0] if jobs else None)
    run = services.latest_run(project=project)
    rows = []
    if run is not None:
        for student in run.students.all():
            m = student.metrics
            rows.append(
                {
                    **m,
                    "loss": student.loss,
                    "student": student,
                    "name": kinds.LOSS_LABELS.get(student.loss, student.loss),
                }
            )
    return {
        "project": project,
        "is_admin": project.user_role == Role.ADMIN,
        "active_job": active,
        "shown_job": shown,
        "log_tail": "\n".join(shown.log.rstrip("\n").splitlines()[-LOG_LINES:]) if shown else "",
        "run": run,
        "rows": rows,
        "chart": accuracy_chart(rows) if rows else None,
        "serving": services.serving_student(project=project),
        "error": error,
        "teachers": kinds.TEACHERS,
        "students": kinds.STUDENTS,
        "losses": [(x, kinds.LOSS_LABELS[x]) for x in LOSSES],
    }


@login_required
@require_GET
def page(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id)
    context = _context(project)
    template = "distill/_panel.html" if request.htmx else "distill/page.html"
    return render(request, template, context)


def _after(request, project, *, error=None, success=None):
    if request.htmx:
        return render(request, "distill/_panel.html", _context(project, error=error))
    if error:
        messages.error(request, error)
    elif success:
        messages.success(request, success)
    return redirect("distill:page", project_id=project.pk)


@login_required
@require_POST
def launch(request, project_id: int):
    """Launch a distillation with the form's settings (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    params = {
        key: request.POST[key]
        for key in ("teacher", "student", "layers", "epochs", "hub_model")
        if request.POST.get(key, "") != ""
    }
    params["losses"] = request.POST.getlist("losses") or list(LOSSES)
    try:
        job = services.launch_distillation(project=project, user=request.user, params=params)
    except ValidationError as exc:
        return _after(request, project, error=" ".join(exc.messages))
    return _after(request, project, success=f"Launched distillation (job #{job.pk}).")


@login_required
@require_POST
def cancel(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    job = services.active_distill_job(project=project)
    if job is None:
        return _after(request, project, error="No distillation is running.")
    try:
        request_cancel(job=job, user=request.user)
    except ValidationError as exc:
        return _after(request, project, error=" ".join(exc.messages))
    return _after(request, project, success=f"Cancel requested for job #{job.pk}.")


@login_required
@require_GET
def download(request, project_id: int, student_id: int):
    """A student as a tar of its Hugging Face folder (members)."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    student = selectors.student_of(project=project, student_id=student_id)
    if student is None:
        raise Http404("No such student.")
    return FileResponse(
        open_artifact(student.artifact),
        as_attachment=True,
        filename=f"{project.pk}-student-{student.pk}-{student.loss}.tar",
        content_type="application/x-tar",
    )
