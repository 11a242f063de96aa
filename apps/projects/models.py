from django.conf import settings as django_settings
from django.db import models


class TaskType(models.TextChoices):
    TEXT_CLASSIFICATION = "text_classification", "Text classification"
    RELATION_EXTRACTION = "relation_extraction", "Relation extraction"
    PREFERENCE = "preference", "Preference pairs (reward models)"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    ANNOTATOR = "annotator", "Annotator"


class Project(models.Model):
    """A labeling project: one task type, one label set, its examples, rules and jobs."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task_type = models.CharField(
        max_length=32, choices=TaskType.choices, default=TaskType.TEXT_CLASSIFICATION
    )
    # Label names in index order: label i of an Example is labels[i].
    labels = models.JSONField(default=list, blank=True)  # empty for preference projects
    # Method settings (proposer, templates, model names, ...), edited on the settings page.
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Archived projects are hidden from the lists and read-only (ArchivedReadOnlyMiddleware).
    archived_at = models.DateTimeField(null=True, blank=True)
    members = models.ManyToManyField(
        django_settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="unique_project_member")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"
