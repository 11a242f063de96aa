"""Preference data of a "preference" project: pairs, weight runs, pairwise judgements and the
re-judgements of the pairs DORM distrusts."""

from django.conf import settings as django_settings
from django.db import models

from apps.projects.models import Project


class PairSplit(models.TextChoices):
    POOL = "pool", "Pool (training)"
    DEV = "dev", "Dev (clean validation)"
    TEST = "test", "Test"


class PairStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISCARDED = "discarded", "Discarded"


class PreferencePair(models.Model):
    """(prompt, chosen, rejected): someone judged ``chosen`` the better response.

    ``stage1_weight``/``weight``/``margin``/``uncertainty``/``disagreement`` are the latest DORM
    weight run's results (null before the first run; written together, atomically, at its end).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pairs")
    external_id = models.CharField(max_length=200)
    prompt = models.TextField()
    chosen = models.TextField()
    rejected = models.TextField()
    source = models.CharField(max_length=200, blank=True, default="")
    split = models.CharField(max_length=8, choices=PairSplit.choices, default=PairSplit.POOL)
    status = models.CharField(max_length=16, choices=PairStatus.choices, default=PairStatus.ACTIVE)
    stage1_weight = models.FloatField(null=True, blank=True)
    weight = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    uncertainty = models.FloatField(null=True, blank=True)
    disagreement = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="unique_pair_id")
        ]
        indexes = [
            models.Index(fields=["project", "split", "status", "weight"], name="pair_weight_idx")
        ]

    def __str__(self) -> str:
        return f"pair {self.external_id}"


class WeightRun(models.Model):
    """One finished DORM weight run: its settings, sizes, timings and refinement curve."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="weight_runs")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    config = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)  # n_train, n_val, seconds, peak_mb, curve, ...
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"weight run {self.pk}"


class Choice(models.TextChoices):
    CHOSEN = "chosen", "Chosen is better"
    REJECTED = "rejected", "Rejected is better"
    TIE = "tie", "Tie"
    SKIP = "skip", "Skip"


class PairJudgement(models.Model):
    """One annotator's pairwise answer, stored in the pair's own terms (not screen sides)."""

    pair = models.ForeignKey(PreferencePair, on_delete=models.CASCADE, related_name="judgements")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    choice = models.CharField(max_length=8, choices=Choice.choices)
    swapped = models.BooleanField(default=False)  # chosen was shown on the right
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "user"], name="unique_pair_judgement")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} on pair {self.pair_id}: {self.choice}"


class Decision(models.TextChoices):
    CONFIRM = "confirm", "Confirm"
    FLIP = "flip", "Flip"
    DISCARD = "discard", "Discard"


class Rejudgement(models.Model):
    """A re-judgement of a low-weight pair: confirm or flip (the pair joins the clean dev set) or
    discard (it leaves training)."""

    pair = models.ForeignKey(PreferencePair, on_delete=models.CASCADE, related_name="rejudgements")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    weight_at_decision = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} pair {self.pair_id}"
