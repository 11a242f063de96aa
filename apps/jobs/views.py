"""Job pages (htmx): the jobs list, a job's page with a live status region, and a project's
recent-jobs fragment that the project dashboard includes with ``hx-get``."""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.jobs.kinds import launchable_kinds
from apps.jobs.models import FINISHED_STATUSES, Job, JobStatus
from apps.jobs.selectors import can_manage_job, get_job_for_user, jobs_for_user, waiting_for
from apps.jobs.services import launch_job, request_cancel
from apps.projects.models import Role
from apps.projects.selectors import get_project_for_user, projects_for_user

PROJECT_FRAGMENT_SIZE = 10
# Tells listening regions (the project fragment) to refresh after a launch or cancel.
HX_JOBS_CHANGED = "jobs-changed"


class JobFilterForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, required=False, empty_label="All projects")
    status = forms.ChoiceField(choices=[("", "Any status"), *JobStatus.choices], required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_for_user(user=user)


@login_required
@require_GET
def job_list(request):
    form = JobFilterForm(request.GET or None, user=request.user)
    jobs = jobs_for_user(user=request.user)
    if form.is_valid():
        if form.cleaned_data["project"]:
            jobs = jobs.filter(project=form.cleaned_data["project"])
        if form.cleaned_data["status"]:
            jobs = jobs.filter(status=form.cleaned_data["status"])
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "jobs": page.object_list,
        "any_active": any(j.status not in FINISHED_STATUSES for j in page.object_list),
        "query": _query_without_page(request),
    }
    template = "jobs/_job_table.html" if request.htmx else "jobs/list.html"
    return render(request, template, context)


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _status_context(request, job: Job) -> dict:
    return {
        "job": job,
        "can_cancel": can_manage_job(user=request.user, job=job),
        "result_json": json.dumps(job.result, indent=2, ensure_ascii=False)
        if job.result is not None
        else "",
        "params_json": json.dumps(job.params, ensure_ascii=False),
        "waiting_for": waiting_for(job=job, user=request.user),
    }


@login_required
@require_GET
def job_detail(request, job_id: int):
    job = get_job_for_user(user=request.user, job_id=job_id)
    return render(request, "jobs/detail.html", _status_context(request, job))


@login_required
@require_GET
def job_status(request, job_id: int):
    """The swappable status region of a job's page; it polls itself while the job runs."""
    job = get_job_for_user(user=request.user, job_id=job_id)
    return render(request, "jobs/_job_status.html", _status_context(request, job))


@login_required
@require_POST
def job_cancel(request, job_id: int):
    job = get_job_for_user(user=request.user, job_id=job_id)
    if not can_manage_job(user=request.user, job=job):
        raise PermissionDenied("Only project admins can cancel jobs.")
    error = None
    try:
        job = request_cancel(job=job, user=request.user)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if request.htmx:
        if request.POST.get("fragment") == "project" and job.project_id:
            response = project_jobs(request, job.project_id)
        else:
            context = _status_context(request, job) | {"action_error": error}
            response = render(request, "jobs/_job_status.html", context)
        response["HX-Trigger"] = HX_JOBS_CHANGED
        return response
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Cancel requested for job #{job.pk}.")
    return redirect("jobs:detail", job_id=job.pk)


@login_required
def project_jobs(request, project_id: int):
    """Recent jobs of one project with live progress bars; a fragment for the dashboard."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    jobs = list(jobs_for_user(user=request.user).filter(project=project)[:PROJECT_FRAGMENT_SIZE])
    context = {
        "fragment_project": project,
        "jobs": jobs,
        "any_active": any(j.status not in FINISHED_STATUSES for j in jobs),
        "is_admin": project.user_role == Role.ADMIN,
        "selftest": launchable_kinds().get("selftest"),
    }
    return render(request, "jobs/_project_jobs.html", context)


@login_required
@require_POST
def project_selftest(request, project_id: int):
    """Launch the worker self-test in a project (project admins)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    params = launchable_kinds()["selftest"].clean_params({})
    job = launch_job(kind="selftest", project=project, user=request.user, params=params)
    if request.htmx:
        response = project_jobs(request, project_id)
        response["HX-Trigger"] = HX_JOBS_CHANGED
        return response
    messages.success(request, f"Launched the worker self-test (job #{job.pk}).")
    return redirect("jobs:detail", job_id=job.pk)
