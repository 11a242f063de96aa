"""What the training services share: their errors, constants, the project's live rounds and
jobs, and small helpers.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import numpy as np
from django.db.models import Count
from django.utils import timezone

from apps.jobs.models import FINISHED_STATUSES, Job, JobStatus
from apps.projects.models import Project
from apps.training import kinds
from apps.training.models import LIVE_ROUND_STATUSES, Round, RoundStatus

logger = logging.getLogger("frugal.training")

Log = Callable[[str], None]
STATE_ARTIFACT = "prboost_state"
FINAL_ARTIFACT = "prboost_final"
LEARNER_C = 10.0  # the end model's inverse L2 strength (bench/prboost.py's choice)
UPDATE_BATCH = 2000
STALE_JOBLESS_ROUND_HOURS = 6  # a round run without a job is taken for dead after this
MASK_PREVIEW = "[MASK]"  # how a masked LM's answer slot shows in template previews


class TrainingError(ValueError):
    """A training step that cannot be done as asked; the message is for users."""


def _null_log(line: str) -> None:
    logger.info(line)


# --------------------------------------------------------------------------- reads
def live_rounds(*, project: Project):
    return Round.objects.filter(project=project, status__in=LIVE_ROUND_STATUSES)


def latest_live_round(*, project: Project) -> Round | None:
    """The round whose saved state is the project's current PRBoost state (None before any)."""
    return live_rounds(project=project).exclude(state_path="").order_by("-number", "-id").first()


def active_training_job(*, project: Project) -> Job | None:
    return (
        Job.objects.filter(project=project, kind__in=kinds.TRAINING_KINDS)
        .exclude(status__in=FINISHED_STATUSES)
        .order_by("created_at", "id")
        .first()
    )


def rule_counts(*, project: Project) -> dict[str, int]:
    """Rules accepted / rejected / pending (suggested) in the project."""
    from apps.rules.models import Rule, RuleStatus

    counts = dict(
        Rule.objects.filter(project=project)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {
        "accepted": counts.get(RuleStatus.ACCEPTED, 0),
        "rejected": counts.get(RuleStatus.REJECTED, 0),
        "pending": counts.get(RuleStatus.SUGGESTED, 0),
    }


def reconcile_rounds(*, project: Project) -> int:
    """Rounds left ``running`` by a job that is over (its worker died, or it was failed or
    cancelled before the handler could say so) are marked failed/cancelled. Returns how many."""
    fixed = 0
    stale = timezone.now() - datetime.timedelta(hours=STALE_JOBLESS_ROUND_HOURS)
    for rnd in Round.objects.filter(project=project, status=RoundStatus.RUNNING).select_related(
        "job"
    ):
        job = rnd.job
        if job is not None and job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            continue
        if job is None and (rnd.job_id is None and rnd.created_at > stale):
            continue  # run in process (a script or benchmark), maybe still going
        cancelled = job is not None and job.status == JobStatus.CANCELLED
        fixed += Round.objects.filter(pk=rnd.pk, status=RoundStatus.RUNNING).update(
            status=RoundStatus.CANCELLED if cancelled else RoundStatus.FAILED,
            error=(job.error if job is not None else "") or "The round's job stopped unfinished.",
            finished_at=timezone.now(),
        )
    return fixed


def _json_safe(value):
    from workers.base import to_json

    return to_json(value)


# --------------------------------------------------------------------------- metrics
def _scores(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import f1_score

    if y.size == 0:
        return {"accuracy": None, "f1": None}
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float(np.mean(pred == y)),
        "f1": float(
            f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0)
        ),
    }
