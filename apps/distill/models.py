"""Distillation runs, their students, and the serving student's predictions on the examples.

A run's rows are written once, at the end of its job, in one transaction: a failed, cancelled or
killed job leaves the previous serving student and its predictions as they were.
"""

from django.db import models
from django.db.models import Q

from apps.datasets.models import Example
from apps.jobs.models import Artifact, Job
from apps.projects.models import Project


class DistillRun(models.Model):
    """One distillation job's outcome: teacher, ε selection and one student per loss."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="distill_runs")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    params = models.JSONField(default=dict, blank=True)
    # teacher metrics, ε selection summary, speeds (see services.run_distillation)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"distillation #{self.pk} of project {self.project_id}"


class Student(models.Model):
    """A trained student: a Hugging Face model folder (tar) in artifact storage."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="students")
    run = models.ForeignKey(DistillRun, on_delete=models.CASCADE, related_name="students")
    loss = models.CharField(max_length=16)  # ce | kd | ls | ptloss
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    # dev/test accuracy, parameters, examples/s, size in bytes
    metrics = models.JSONField(default=dict, blank=True)
    max_length = models.PositiveIntegerField(default=64)
    is_serving = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_serving=True), name="one_serving_student"
            )
        ]

    def __str__(self) -> str:
        return f"student {self.loss} of run {self.run_id}"


class Prediction(models.Model):
    """The serving student's label and confidence for one example (replaced with the student)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    example = models.OneToOneField(
        Example, on_delete=models.CASCADE, related_name="student_prediction"
    )
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="predictions")
    label = models.IntegerField()
    confidence = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["project", "label"], name="prediction_label_idx")]

    def __str__(self) -> str:
        return f"example {self.example_id}: {self.label} ({self.confidence:.2f})"
