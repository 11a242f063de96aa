"""Periodic repair of training state (run by the workers, see workers/maintenance_tasks.py)."""

from apps.projects.models import Project
from apps.training.models import Round, RoundStatus
from apps.training.services import reconcile_rounds


def reconcile_all_rounds() -> int:
    """:func:`~apps.training.services.reconcile_rounds` for every project with a round left
    ``running``. Returns how many rounds were marked failed or cancelled."""
    project_ids = Round.objects.filter(status=RoundStatus.RUNNING).values_list(
        "project_id", flat=True
    )
    return sum(
        reconcile_rounds(project=project)
        for project in Project.objects.filter(pk__in=set(project_ids))
    )
