"""Reads of jobs, always scoped to the user asking."""

from django.db.models import Q, QuerySet
from django.http import Http404

from apps.jobs.models import Job
from apps.projects.models import Role
from apps.projects.selectors import projects_for_user, role_in_project


def jobs_for_user(*, user) -> QuerySet[Job]:
    """Jobs of the projects the user is a member of, plus project-less jobs they launched."""
    if not user.is_authenticated:
        return Job.objects.none()
    jobs = Job.objects.select_related("project", "launched_by")
    if user.is_superuser:
        return jobs
    project_ids = projects_for_user(user=user).values("id")
    return jobs.filter(Q(project_id__in=project_ids) | Q(project__isnull=True, launched_by=user))


def get_job_for_user(*, user, job_id: int) -> Job:
    """The job if the user may see it; 404 otherwise (its existence does not leak)."""
    job = jobs_for_user(user=user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def can_manage_job(*, user, job: Job) -> bool:
    """Project admins (and superusers) manage a project's jobs; launchers their own others."""
    if not user.is_authenticated:
        return False
    if job.project_id is None:
        return user.is_superuser or job.launched_by_id == user.pk
    return role_in_project(user=user, project=job.project) == Role.ADMIN
