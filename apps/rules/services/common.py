"""What the rule services share: their errors, a rule's key hash, the number of decisions a
suggestion needs, the snapshot a decision records, and what follows a decision
(:func:`after_decision`)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from apps.projects.models import Project
from apps.rules.models import Rule

logger = logging.getLogger("frugal.rules")

MAX_DECISIONS_NEEDED = 9
# Hand-written regexes are capped well below the engine's own limit: a pattern longer than
# this is not something a person types, and the live preview stays fast.
MAX_MANUAL_PATTERN_LENGTH = 500
# A keyword list is checked for size before any other work (issue 13 item 2: 50,000 words took
# 16 s): at most this many words as given (duplicates included) and characters in all.
MAX_WORDS_GIVEN = 1_000
MAX_WORDS_CHARS = 20_000


def check_words_size(value: Any) -> None:
    """RuleInputError if a keyword list (text or list, as given) is too large to look at."""
    if isinstance(value, str):
        chars, count = len(value), value.count(",") + value.count("\n") + 1
    elif isinstance(value, list | tuple):
        count = len(value)
        chars = sum(len(v) if isinstance(v, str) else 0 for v in value[: MAX_WORDS_GIVEN + 1])
    else:
        return
    if count > MAX_WORDS_GIVEN:
        raise RuleInputError(
            f"this list has {count:,} words; a keyword rule takes at most 100 different words "
            f"(and {MAX_WORDS_GIVEN:,} as given)"
        )
    if chars > MAX_WORDS_CHARS:
        raise RuleInputError(
            f"the words are {chars:,} characters long in all; the limit is {MAX_WORDS_CHARS:,}"
        )


class RuleConflict(Exception):
    """Someone else changed the rule first; ``message`` says who, what and when."""

    def __init__(self, message: str, rule: Rule | None = None):
        super().__init__(message)
        self.message = message
        self.rule = rule


class RuleInputError(ValueError):
    """A rule or an edit that cannot be used; ``message`` says why in plain words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def key_hash(key: str) -> str:
    """The hex SHA-256 of a rule key (the unique column: keys can be long)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def decisions_needed_for(project: Project) -> int:
    """Decisions each suggestion needs: ``settings["prboost"]["decisions_per_suggestion"]``
    (set on the training settings page), else the top-level key; 1 by default."""
    settings_ = project.settings or {}
    prboost = settings_.get("prboost") if isinstance(settings_.get("prboost"), Mapping) else {}
    value = prboost.get("decisions_per_suggestion", settings_.get("decisions_per_suggestion", 1))
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 1
    return min(max(value, 1), MAX_DECISIONS_NEEDED)


def snapshot(rule: Rule) -> dict[str, Any]:
    """What a decision records of the rule before and after it."""
    return {
        "status": rule.status,
        "definition": rule.definition,
        "label": rule.label,
        "description": rule.description,
        "version": rule.version,
    }


def after_decision(*, project_id: int, project: Project | None = None) -> None:
    """What follows a decision, once its transaction commits: the project's next round, when
    apps.training wants one now (``auto_next_round`` on, the round's review complete, no
    training job running). A failure there is logged and never touches the decision.
    ``project``: the project already in hand (saves reading it again)."""

    def start_next_round() -> None:
        # apps.training depends on this app (its rounds read and write rules): imported here,
        # when called, so that no import cycle forms.
        from apps.training.services import maybe_start_next_round

        current = project
        if current is None or current.pk != project_id:
            current = Project.objects.filter(pk=project_id).first()
        if current is None:
            return
        try:
            maybe_start_next_round(project=current)
        except Exception:  # a failed check must never break the decision that triggered it
            logger.exception("project %s: could not check for an automatic next round", project_id)

    transaction.on_commit(start_next_round)
