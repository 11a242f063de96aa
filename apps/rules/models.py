"""Labeling rules of a project and every decision people made about them.

A ``Rule`` row holds one ``models.prboost`` rule (``definition`` = ``rule.to_dict()``) with the
evidence that it was proposed from and its scores. ``key`` is ``models.prboost.propose.rule_key``
of the rule (its canonical identity); ``key_hash`` (SHA-256 of the key) carries the
one-rule-per-key-per-project constraint, since keys of long regexes do not fit a B-tree index.

Suggested rules are handed to one annotator at a time through a short lease
(``claimed_by``/``claimed_until``); every decision bumps ``version`` so that a decision made on a
stale view is refused instead of silently overwriting another (optimistic concurrency).
"""

from django.conf import settings
from django.db import models

from apps.projects.models import Project


class RuleKind(models.TextChoices):
    KEYWORD = "keyword", "Keyword"
    REGEX = "regex", "Regex"
    PROMPT = "prompt", "Prompt"
    SIMILARITY = "similarity", "Similarity"


class RuleStatus(models.TextChoices):
    SUGGESTED = "suggested", "Suggested"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class RuleOrigin(models.TextChoices):
    PROPOSED = "proposed", "Proposed by a round"
    MANUAL = "manual", "Written by hand"
    SEED = "seed", "Seed rule"


class DecisionAction(models.TextChoices):
    ACCEPT = "accept", "Accept"
    REJECT = "reject", "Reject"
    SKIP = "skip", "Skip"
    EDIT = "edit", "Edit"
    UNDO = "undo", "Undo"


class Rule(models.Model):
    """One rule of a project: what it says, where it came from, how good it looks, its status."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    # models.prboost rule.to_dict(); rebuilt with models.prboost.rules.rule_from_dict.
    definition = models.JSONField()
    key = models.TextField()
    key_hash = models.CharField(max_length=64)
    label = models.IntegerField()
    description = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=RuleStatus.choices, default=RuleStatus.SUGGESTED
    )
    origin = models.CharField(max_length=16, choices=RuleOrigin.choices, default=RuleOrigin.MANUAL)
    round_number = models.IntegerField(null=True, blank=True)
    # {"source_example_id", "source_text", "answer_word", "sample_example_ids": [...]}
    evidence = models.JSONField(default=dict, blank=True)
    # {"coverage", "pool_matches", "dev_precision", "dev_matches", "dev_correct", "novelty",
    #  "score", "overlap", "conflict"} (overlap/conflict: with the accepted rules, share of matches)
    stats = models.JSONField(default=dict, blank=True)
    score = models.FloatField(default=0.0)
    decisions_needed = models.PositiveSmallIntegerField(default=1)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key_hash"], name="unique_rule_key"),
        ]
        indexes = [
            # The review queue: suggested rules of a round, best first.
            models.Index(
                fields=["project", "status", "round_number", "-score", "id"],
                name="rule_queue_idx",
            ),
            models.Index(fields=["project", "-updated_at"], name="rule_recent_idx"),
            # The current round (MAX(round_number)) is read on every claim.
            models.Index(fields=["project", "round_number"], name="rule_round_idx"),
        ]

    def __str__(self) -> str:
        return self.description or f"{self.kind} rule #{self.pk}"


class RuleDecision(models.Model):
    """Who did what to a rule, when, and the rule before and after (the audit trail)."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=8, choices=DecisionAction.choices)
    # {"status", "definition", "label", "description", "version"} of the rule around the decision
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    undone = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["rule", "-created_at"], name="decision_rule_idx"),
            models.Index(fields=["user", "-created_at"], name="decision_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.action} rule #{self.rule_id}"
