"""Boosting rounds and finalized label sets of a project.

The current PRBoost state of a project is the saved loop of its latest *live* round (status
``review`` or ``complete``); a round that is running, failed or was cancelled never replaces it.
"""

from django.db import models
from django.db.models import Q

from apps.jobs.models import Job
from apps.projects.models import Project


class RoundStatus(models.TextChoices):
    RUNNING = "running", "Running"
    REVIEW = "review", "In review"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


LIVE_ROUND_STATUSES = (RoundStatus.REVIEW, RoundStatus.COMPLETE)


class Round(models.Model):
    """One PRBoost boosting round: its weak learner's α, its metrics and the saved loop state."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_rounds")
    number = models.PositiveIntegerField()  # 1-based; round n trains the loop's member n-1
    status = models.CharField(
        max_length=16, choices=RoundStatus.choices, default=RoundStatus.RUNNING
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    alpha = models.FloatField(null=True, blank=True)
    weighted_error = models.FloatField(null=True, blank=True)
    # dev/test accuracy and macro F1, coverage, rules accepted/rejected/pending, candidates
    # proposed, time per phase (see services.round_metrics).
    metrics = models.JSONField(default=dict, blank=True)
    # The PRBoostLoop state after this round: a tar of the loop's folder in artifact storage.
    state_path = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "number", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "number"],
                condition=Q(status__in=["review", "complete"]),
                name="unique_live_round_number",
            )
        ]
        indexes = [models.Index(fields=["project", "status", "-number"], name="round_live_idx")]

    def __str__(self) -> str:
        return f"round {self.number} of project {self.project_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_ROUND_STATUSES


class LabelSet(models.Model):
    """A finalized set of labels (self-training after a round): what the export serves."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_sets")
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="label_sets"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    version = models.CharField(max_length=64)  # written to Example.label_version
    n_labeled = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    state_path = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.version} ({self.n_labeled} labels)"
