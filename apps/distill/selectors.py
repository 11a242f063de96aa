"""Reads for the distillation pages and API."""

from apps.distill import kinds
from apps.distill.models import Student
from apps.jobs.models import Job


def distill_jobs(*, project, limit: int = 10) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind=kinds.DISTILL).order_by("-created_at", "-id")[
            :limit
        ]
    )


def student_of(*, project, student_id: int) -> Student | None:
    return Student.objects.filter(project=project, pk=student_id).select_related("artifact").first()
