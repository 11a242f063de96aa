"""LoRC-compressed versions of a project's causal LM, and what the proposer was using before."""

from django.db import models

from apps.jobs.models import Artifact, Job
from apps.projects.models import Project


class CompressedLM(models.Model):
    """One calibration: the factors + schedule file (an artifact) and its measured quality."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="compressed_lms")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="+")
    base_model = models.CharField(max_length=300, blank=True, default="")  # "" = the default LM
    bits = models.PositiveSmallIntegerField(default=8)
    # bytes per token (full, compressed), saved share, perplexity (full, compressed) on held-out
    # project text, proposer top-1 / top-k agreement, tokens used (see services.calibrate)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"LoRC #{self.pk} of project {self.project_id}"


class ProposerSwitch(models.Model):
    """The language model the PRBoost settings named before the LoRC model replaced it, so that
    switching back restores it. Whether LoRC is on is read from the PRBoost settings themselves."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="lorc_switch")
    previous_language_model = models.CharField(max_length=300, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"LoRC proposer switch of project {self.project_id}"
