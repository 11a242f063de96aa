from django.conf import settings as django_settings
from django.db import models

from apps.projects.models import Project


class Guidelines(models.Model):
    """A project's labeling guidelines (Markdown), shown beside labeling and review."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="guidelines")
    text = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Guidelines of {self.project}"
