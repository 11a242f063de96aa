"""Glue to the rules app (no business logic here): the automatic next round and the LM answer
index for apps.rules' live preview of prompt rules."""

import logging

from django.db import transaction

logger = logging.getLogger("frugal.training")


def _after_decision(sender, instance, created, **kwargs):
    """After a review decision commits: start the next round if the project wants it and the
    round's review is complete (``services.maybe_start_next_round`` decides)."""
    if not created:
        return
    project_id = instance.rule.project_id

    def check():
        from apps.projects.models import Project
        from apps.training.services import maybe_start_next_round

        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return
        try:
            maybe_start_next_round(project=project)
        except Exception:  # a failed check must never break the decision that triggered it
            logger.exception("project %s: could not check for an automatic next round", project_id)

    transaction.on_commit(check)


def connect() -> None:
    from django.db.models.signals import post_save

    from apps.rules.models import RuleDecision
    from apps.rules.services import register_answer_index_provider
    from apps.training.data import answer_index_for_examples

    post_save.connect(_after_decision, sender=RuleDecision, dispatch_uid="training-auto-round")
    register_answer_index_provider(answer_index_for_examples)
