from django.conf import settings as django_settings
from django.db import models

from apps.datasets.models import Example
from apps.projects.models import Project


class BulkAction(models.Model):
    """One bulk change to the examples a search + filter selected, undoable.

    ``kind`` is "label" (gold label ``value``, a label index) or "split" (move to ``value``).
    The previous values of every changed example are kept in :class:`BulkItem` rows.
    """

    KINDS = (("label", "Set gold label"), ("split", "Move to split"))

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The job that ran it (actions above the request's limit run as jobs); None = in the request.
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=8, choices=KINDS)
    value = models.CharField(max_length=16)
    filters = models.JSONField(default=dict)
    count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="bulk_action_project_idx")]

    def __str__(self) -> str:
        return f"{self.kind}={self.value} on {self.count} examples"


class BulkItem(models.Model):
    """An example a bulk action changed, with the values it had before."""

    action = models.ForeignKey(BulkAction, on_delete=models.CASCADE, related_name="items")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="+")
    previous_gold_label = models.IntegerField(null=True)
    previous_split = models.CharField(max_length=8)
    previous_by_id = models.IntegerField(null=True)  # a user id (kept even if the user goes)
    previous_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"example {self.example_id} in bulk action {self.action_id}"
