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


def waiting_for(*, job: Job, user) -> str:
    """What a queued job waits for, in words: the job running on its queue ("Behind job #12,
    Warm the PRBoost cache, 40%."), the jobs queued before it, or a worker for its queue.
    Jobs the user may not see are not named. Empty when the job is not queued."""
    from apps.jobs.models import JobStatus

    if job.status != JobStatus.QUEUED:
        return ""
    same_queue = Job.objects.filter(queue=job.queue).exclude(pk=job.pk)
    running = list(same_queue.filter(status=JobStatus.RUNNING).order_by("started_at", "id")[:3])
    ahead = same_queue.filter(status=JobStatus.QUEUED, created_at__lt=job.created_at).count()
    visible = set(
        jobs_for_user(user=user).filter(pk__in=[r.pk for r in running]).values_list("pk", flat=True)
    )
    parts = []
    for other in running:
        if other.pk in visible:
            parts.append(f"job #{other.pk}, {other.kind_label}, {round(100 * other.progress)}%")
        else:
            parts.append(f"a job of another project ({round(100 * other.progress)}%)")
    text = ""
    if parts:
        text = "Behind " + "; ".join(parts)
        if ahead:
            text += f", then {ahead} queued job{'s' if ahead != 1 else ''}"
        return text + f" on the {job.queue} queue."
    if ahead:
        return f"Behind {ahead} queued job{'s' if ahead != 1 else ''} on the {job.queue} queue."
    return f"Waiting for a worker on the {job.queue} queue."
