"""Reads for the LoRC page."""

from django.db.models import QuerySet

from apps.jobs.models import FINISHED_STATUSES, Job
from apps.lorc import kinds
from apps.lorc.models import CompressedLM
from apps.projects.models import Project
from apps.training.prboost_settings import prboost_settings
from models.lm import LORC_PREFIX


def compressed_lms(*, project: Project) -> QuerySet[CompressedLM]:
    return CompressedLM.objects.filter(project=project).select_related("artifact", "job")


def active_job(*, project: Project) -> Job | None:
    return (
        Job.objects.filter(project=project, kind=kinds.CALIBRATE)
        .exclude(status__in=FINISHED_STATUSES)
        .order_by("-id")
        .first()
    )


def proposer_model(*, project: Project) -> CompressedLM | None:
    """The compressed model the PRBoost proposer loads now, if any."""
    name = (prboost_settings(project).get("language_model") or "").strip()
    if not name.startswith(LORC_PREFIX):
        return None
    path = name[len(LORC_PREFIX) :]
    for c in compressed_lms(project=project):
        if path.endswith(c.artifact.path):
            return c
    return None


def proposer_uses_lorc(*, project: Project) -> bool:
    name = (prboost_settings(project).get("language_model") or "").strip()
    return name.startswith(LORC_PREFIX)
