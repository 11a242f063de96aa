from django.conf import settings as django_settings
from django.db import models

from apps.datasets.models import Example
from apps.projects.models import Project


class Overlap(models.Model):
    """How many annotators label each example before it counts as gold (``k``, default 1).

    A project without a row has ``k = 1``: one person's label is the gold label, as before.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="overlap")
    k = models.PositiveSmallIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project}: k={self.k}"


class AnnotatorLabel(models.Model):
    """One annotator's label on one example (projects with overlap ``k > 1``).

    ``Example.gold_label`` stays the adjudicated / consensus value that every reader uses;
    these rows are the individual answers it was made from, and what agreement is measured on.
    ``source_split`` is where the example was when labeled and ``target_split`` where its gold
    label puts it (pool examples labeled into dev or test move once they become gold).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="annotator_labels")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    label = models.IntegerField()
    source_split = models.CharField(max_length=8)
    target_split = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["example", "user"], name="unique_annotator_label")
        ]
        indexes = [
            models.Index(fields=["project", "example"], name="annotator_label_project_idx"),
            models.Index(fields=["project", "user", "id"], name="annotator_label_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.label} on {self.example_id}"
