from django.conf import settings
from django.db import models

from apps.projects.models import Project


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A unit of long work run by a Celery worker; the row is the source of truth for its state."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    queue = models.CharField(max_length=32, default="cpu")
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True, default="")
    log = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set in the same transaction that makes a handler's work durable (JobContext.commit_point):
    # from then on the job is never re-run; a stop or crash before its finish ends it succeeded.
    committed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="job_project_idx"),
            # The stale-job check looks up running jobs on every jobs page read.
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def kind_label(self) -> str:
        """The kind as people read it (see apps.jobs.kinds.kind_label)."""
        from apps.jobs.kinds import kind_label

        return kind_label(self.kind)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Artifact(models.Model):
    """A file a job produced (model weights, LM caches), stored in the ``artifacts`` storage."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="artifacts")
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts"
    )
    kind = models.CharField(max_length=64)
    name = models.CharField(max_length=300)
    path = models.CharField(max_length=500)  # name inside the artifacts storage
    size_bytes = models.BigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}"
