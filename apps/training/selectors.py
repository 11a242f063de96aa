"""Reads for the training dashboard and API."""

from apps.jobs.models import Job
from apps.training import kinds
from apps.training.models import LIVE_ROUND_STATUSES, Round, RoundStatus


def rounds_of(*, project):
    """Every round of the project, oldest first (failed and cancelled attempts included)."""
    return Round.objects.filter(project=project).select_related("job").order_by("number", "id")


def live_rounds_of(*, project) -> list[Round]:
    """The rounds whose states chain into the current one: the ensemble's members, in order."""
    return list(
        Round.objects.filter(project=project, status__in=LIVE_ROUND_STATUSES).order_by("number")
    )


def running_round(*, project) -> Round | None:
    return Round.objects.filter(project=project, status=RoundStatus.RUNNING).order_by("-id").first()


def training_jobs(*, project, limit: int = 10) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind__in=kinds.TRAINING_KINDS)
        .select_related("launched_by")
        .order_by("-created_at", "-id")[:limit]
    )
