from django.contrib.postgres.search import SearchVectorField
from django.db import models

from apps.projects.models import Project


class Split(models.TextChoices):
    POOL = "pool", "Pool (unlabeled)"
    DEV = "dev", "Dev (gold)"
    TEST = "test", "Test (gold)"


class LabelSource(models.TextChoices):
    NONE = "", "None"
    GOLD = "gold", "Gold"
    RULES = "rules", "Rules"
    MODEL = "model", "Model"


class Example(models.Model):
    """One text (or sentence with two entity mentions) of a project.

    Labels are indexes into ``project.labels``. ``gold_label`` is a person's answer;
    ``label``/``confidence``/``label_source`` are what the methods currently say.
    """

    # No index of its own: every composite index below starts with project, and each index
    # costs time on bulk imports.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="examples", db_index=False
    )
    external_id = models.CharField(max_length=200)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.POOL)
    text = models.TextField()
    # ``to_tsvector('english', text)``, filled after the import by the search indexing job
    # (``apps.datasets.search_index``) instead of during its COPY; NULL = not indexed yet, and
    # search then computes the vector on the fly. Always NULL on SQLite (substring search).
    search_vector = SearchVectorField(null=True, blank=True, editable=False)
    # Relation extraction: [{"text": str, "start": int, "end": int}, {...}] (character spans).
    entities = models.JSONField(null=True, blank=True)
    gold_label = models.IntegerField(null=True, blank=True)
    label = models.IntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # How far the current label's probability is above the runner-up's (top-1 − top-2, 0..1),
    # written with model and rule labels; the "least sure first" labeling queue sorts by it.
    margin = models.FloatField(null=True, blank=True)
    label_source = models.CharField(
        max_length=8, choices=LabelSource.choices, default=LabelSource.NONE, blank=True
    )
    # Which finalized run wrote label/confidence (e.g. "prboost round 3"), for the export.
    label_version = models.CharField(max_length=64, blank=True, default="")
    # Votes of rules, -1 = abstain: {"external": [...]} from an imported WRENCH set, more later.
    votes = models.JSONField(null=True, blank=True)
    # Indexed only where set (``example_gold_labeled_by_idx``): a full index held one entry per
    # imported row, all NULL, and cost an import ~4 s per million rows.
    gold_labeled_by = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    gold_labeled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="unique_example_external_id"
            )
        ]
        indexes = [
            models.Index(fields=["project", "split", "id"], name="example_split_idx"),
            models.Index(fields=["project", "gold_label", "id"], name="example_gold_idx"),
            models.Index(fields=["project", "label", "id"], name="example_label_idx"),
            # the least-sure queue: unlabeled rows with a margin, smallest first (partial, so
            # imports, which write no margin, do not pay for it)
            models.Index(
                fields=["project", "split", "margin", "id"],
                condition=models.Q(gold_label__isnull=True, margin__isnull=False),
                name="example_least_sure_idx",
            ),
            models.Index(
                fields=["gold_labeled_by"],
                condition=models.Q(gold_labeled_by__isnull=False),
                name="example_gold_labeled_by_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.text[:60]}"
