"""Writes to rules, one module per job; views, the API and the round job call them from here.

- :mod:`.review` — leasing suggestions to annotators, decisions (with the one-statement
  PostgreSQL path), undo; every decision is followed by :func:`.common.after_decision`;
- :mod:`.authoring` — rules written by hand, edits, deletion, a round's suggestions;
- :mod:`.preview` — the live preview of one rule on the whole project;
- :mod:`.common` — errors, key hashes, the snapshot a decision records, what follows one.

Matching and highlighting are ``models.prboost.matching``'s (:class:`JoinedTexts`,
:func:`match_spans`, :func:`highlight_html`); the texts cache is :mod:`apps.rules.corpus`; reads
are :mod:`apps.rules.selectors` (the few the round job reads are also importable from here).
"""

from apps.rules.corpus import ProjectTexts, forget_project_texts, project_texts
from apps.rules.describe import describe, label_names
from apps.rules.highlight import highlight_rule
from apps.rules.selectors import (
    accepted_rule_rows,
    accepted_rules,
    current_round,
    judged_keys,
    review_progress,
    sample_examples,
)
from apps.rules.services.authoring import (
    apply_edits,
    build_definition,
    create_manual_rule,
    delete_rule,
    store_suggestions,
)
from apps.rules.services.common import (
    MAX_MANUAL_PATTERN_LENGTH,
    RuleConflict,
    RuleInputError,
    after_decision,
    decisions_needed_for,
    key_hash,
    snapshot,
)
from apps.rules.services.preview import (
    PREVIEW_DENSE_BUDGET,
    PREVIEW_SAMPLES,
    PREVIEW_TEXT_CHARS,
    Preview,
    PreviewSample,
    preview_rule,
)
from apps.rules.services.review import (
    LEASE_SECONDS,
    UNDOABLE_ACTIONS,
    VOTING_ACTIONS,
    can_undo,
    conflict_message,
    decide,
    next_suggestion_for,
    release_claim,
    undo_last_decision,
)

__all__ = [
    "LEASE_SECONDS",
    "MAX_MANUAL_PATTERN_LENGTH",
    "PREVIEW_DENSE_BUDGET",
    "PREVIEW_SAMPLES",
    "PREVIEW_TEXT_CHARS",
    "UNDOABLE_ACTIONS",
    "VOTING_ACTIONS",
    "Preview",
    "PreviewSample",
    "ProjectTexts",
    "RuleConflict",
    "RuleInputError",
    "accepted_rule_rows",
    "accepted_rules",
    "after_decision",
    "apply_edits",
    "build_definition",
    "can_undo",
    "conflict_message",
    "create_manual_rule",
    "current_round",
    "decide",
    "decisions_needed_for",
    "delete_rule",
    "describe",
    "forget_project_texts",
    "highlight_rule",
    "judged_keys",
    "key_hash",
    "label_names",
    "next_suggestion_for",
    "preview_rule",
    "project_texts",
    "release_claim",
    "review_progress",
    "sample_examples",
    "snapshot",
    "store_suggestions",
    "undo_last_decision",
]
