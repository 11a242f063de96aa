"""Writing rules: rules people write by hand, edits to a rule's definition, deletion, and the
suggestions a round proposes.

Bad input raises :class:`RuleInputError` with a message for people, and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.datasets.models import Example
from apps.projects.models import Project
from apps.rules.describe import describe, label_names
from apps.rules.models import DecisionAction, Rule, RuleDecision, RuleOrigin, RuleStatus
from apps.rules.precision import dev_precision
from apps.rules.services.common import (
    MAX_MANUAL_PATTERN_LENGTH,
    RuleInputError,
    after_decision,
    check_words_size,
    decisions_needed_for,
    key_hash,
    snapshot,
)
from apps.rules.services.preview import preview_rule
from models.prboost.propose import rule_key
from models.prboost.rules import (
    KeywordRule,
    RegexRule,
    RuleError,
    rule_from_dict,
    validate_regex,
)


def _words(value) -> tuple[str, ...]:
    """Words from a list or from text separated by commas or new lines, each once (first
    occurrence kept), sizes checked before any other work."""
    check_words_size(value)
    if isinstance(value, str):
        parts = re.split(r"[,\n]", value)
    elif isinstance(value, Sequence):
        parts = [str(v) for v in value]
    else:
        raise RuleInputError("words must be a list or text separated by commas")
    words = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not words:
        raise RuleInputError("give at least one word or phrase")
    return words


def _label_index(project: Project, value) -> int:
    names = label_names(project)
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        if value in names:
            return names.index(value)
        raise RuleInputError(f"unknown label {value!r}: use one of {', '.join(names)}")
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise RuleInputError("choose a label") from None
    if not 0 <= index < len(names):
        raise RuleInputError(f"label {index} does not exist (the project has {len(names)} labels)")
    return index


def _check_pattern(pattern: str) -> None:
    if len(pattern) > MAX_MANUAL_PATTERN_LENGTH:
        raise RuleInputError(
            f"the pattern is {len(pattern)} characters long; the limit is "
            f"{MAX_MANUAL_PATTERN_LENGTH}"
        )
    try:
        validate_regex(pattern)
    except RuleError as exc:
        raise RuleInputError(str(exc)) from None


def build_definition(
    *,
    project: Project,
    kind: str,
    label,
    words=None,
    pattern: str | None = None,
    mode: str = "any",
    case_sensitive: bool = False,
    flags: str = "i",
) -> dict[str, Any]:
    """A validated keyword or regex rule definition (``to_dict()``); RuleInputError if bad."""
    label = _label_index(project, label)
    try:
        if kind == "keyword":
            rule = KeywordRule(
                words=_words(words or ""), label=label, mode=mode, case_sensitive=case_sensitive
            )
        elif kind == "regex":
            pattern = (pattern or "").strip("\n")
            if not pattern:
                raise RuleInputError("write a pattern")
            _check_pattern(pattern)
            rule = RegexRule(pattern=pattern, label=label, flags=flags)
        else:
            raise RuleInputError("rules written by hand are keyword or regex rules")
    except RuleError as exc:
        raise RuleInputError(str(exc)) from None
    return rule.to_dict()


def apply_edits(*, rule: Rule, edits: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's definition with ``edits`` applied and validated.

    Editable: ``label`` (any kind), ``words`` (keyword), ``pattern`` (regex), ``answer_words``
    and ``threshold`` (prompt), ``threshold`` (similarity), ``mode`` (keyword).
    """
    definition = dict(rule.definition)
    kind = definition.get("kind")
    allowed = {"label"} | {
        "keyword": {"words", "mode"},
        "regex": {"pattern"},
        "prompt": {"answer_words", "words", "threshold"},
        "similarity": {"threshold"},
    }.get(kind, set())
    unknown = sorted(k for k, v in edits.items() if k not in allowed and v not in (None, ""))
    if unknown:
        raise RuleInputError(f"a {kind} rule cannot change {', '.join(unknown)}")
    if edits.get("label") not in (None, ""):
        definition["label"] = _label_index(rule.project, edits["label"])
    if kind == "keyword" and edits.get("words") not in (None, ""):
        definition["words"] = list(_words(edits["words"]))
    if kind == "keyword" and edits.get("mode") in ("any", "all"):
        definition["mode"] = edits["mode"]
    if kind == "regex" and edits.get("pattern") not in (None, ""):
        _check_pattern(str(edits["pattern"]))
        definition["pattern"] = str(edits["pattern"])
    if kind == "prompt":
        words = edits.get("answer_words") or edits.get("words")
        if words not in (None, ""):
            definition["answer_words"] = list(_words(words))
    if edits.get("threshold") not in (None, "") and kind in ("prompt", "similarity"):
        try:
            definition["threshold"] = float(edits["threshold"])
        except (TypeError, ValueError):
            raise RuleInputError("the threshold must be a number") from None
    try:
        return rule_from_dict(definition).to_dict()
    except RuleError as exc:
        raise RuleInputError(str(exc)) from None


def set_definition(rule: Rule, definition: Mapping[str, Any], *, project: Project) -> None:
    """Give the rule a new definition, and its statistics now (coverage and dev precision of
    the new definition, as the live preview computes them; the proposal-time novelty and
    overlap no longer apply and are dropped)."""
    built = rule_from_dict(definition)
    rule.definition = built.to_dict()
    rule.kind = built.kind
    rule.label = built.label
    rule.key = rule_key(built)
    rule.key_hash = key_hash(rule.key)
    rule.description = describe(built, project)
    preview = preview_rule(project=project, definition=rule.definition, samples=0)
    if not preview.error:
        rule.stats = {**preview.stats(), "computed": "edit"}


def save_unique(rule: Rule, *, project: Project) -> None:
    """Save the rule; RuleInputError (naming the other rule) if its key is another rule's."""
    clash = Rule.objects.filter(project=project, key_hash=rule.key_hash).exclude(pk=rule.pk)
    if clash.exists():
        raise RuleInputError(duplicate_message(project, rule.key))
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:  # the same rule saved by someone else just now
        raise RuleInputError("An identical rule was just saved in this project.") from None


def duplicate_message(project: Project, key: str) -> str:
    other = Rule.objects.filter(project=project, key_hash=key_hash(key)).first()
    if other is None:
        return "An identical rule already exists in this project."
    return f"An identical rule already exists in this project (#{other.pk}, {other.status})."


def create_manual_rule(
    *,
    project: Project,
    user,
    kind: str,
    label,
    words=None,
    pattern: str | None = None,
    mode: str = "any",
    case_sensitive: bool = False,
    flags: str = "i",
    origin: str = RuleOrigin.MANUAL,
) -> Rule:
    """A keyword or regex rule written by a person: accepted at once, with its preview stats.

    Bad input (unknown label, empty words, a regex RE2 refuses or longer than
    ``MAX_MANUAL_PATTERN_LENGTH``, a duplicate of an existing rule) raises RuleInputError and
    changes nothing.
    """
    definition = build_definition(
        project=project,
        kind=kind,
        label=label,
        words=words,
        pattern=pattern,
        mode=mode,
        case_sensitive=case_sensitive,
        flags=flags,
    )
    built = rule_from_dict(definition)
    key = rule_key(built)
    if Rule.objects.filter(project=project, key_hash=key_hash(key)).exists():
        raise RuleInputError(duplicate_message(project, key))
    preview = preview_rule(project=project, definition=definition, exact=True)
    now = timezone.now()
    rule = Rule(
        project=project,
        kind=built.kind,
        definition=definition,
        key=key,
        key_hash=key_hash(key),
        label=built.label,
        description=describe(built, project),
        status=RuleStatus.ACCEPTED,
        origin=origin,
        stats=preview.stats(),
        score=0.0,
        decisions_needed=1,
        created_by=user,
        decided_by=user,
        decided_at=now,
    )
    rule.full_clean(exclude=["key", "definition", "evidence", "stats"])
    try:
        with transaction.atomic():
            rule.save()
            RuleDecision.objects.create(
                rule=rule, user=user, action=DecisionAction.ACCEPT, before={}, after=snapshot(rule)
            )
    except IntegrityError:
        raise RuleInputError(duplicate_message(project, key)) from None
    after_decision(project_id=project.pk)
    return rule


def delete_rule(*, rule: Rule) -> None:
    """Remove a rule and its decision history (admins only; the views check)."""
    rule.delete()


# ---------------------------------------------------------------------------------------------
# suggestions from a round


def store_suggestions(
    *,
    project: Project,
    round_number: int,
    candidates: Sequence,
    dev_ids: Sequence[int] | np.ndarray,
    pool_ids: Sequence[int] | np.ndarray,
    accepted_matches: Mapping[int, np.ndarray] | None = None,
) -> list[Rule]:
    """Persist a round's ranked ``models.prboost.propose.Candidate`` objects as suggestions.

    ``dev_ids``/``pool_ids`` map the candidates' dev and pool indices to Example ids.
    ``accepted_matches`` (optional): accepted Rule id → sorted pool indices it matches, for the
    overlap and conflict shown to reviewers (without it, overlap is 1 − novelty and conflict is
    not shown). Candidates whose key was already accepted or rejected are skipped; ones already
    suggested are moved to this round with fresh evidence. Returns the stored rules, in order.
    """
    dev_ids = np.asarray(dev_ids, dtype=np.int64)
    pool_ids = np.asarray(pool_ids, dtype=np.int64)
    needed = decisions_needed_for(project)
    existing = {
        row.key_hash: row
        for row in Rule.objects.filter(
            project=project, key_hash__in=[key_hash(rule_key(c.rule)) for c in candidates]
        )
    }
    source_ids = {int(dev_ids[c.source_index]) for c in candidates if c.source_index is not None}
    source_texts = dict(
        Example.objects.filter(project=project, pk__in=source_ids).values_list("id", "text")
    )
    accepted_labels = (
        dict(
            Rule.objects.filter(project=project, pk__in=list(accepted_matches)).values_list(
                "id", "label"
            )
        )
        if accepted_matches
        else {}
    )
    stored: list[Rule] = []
    with transaction.atomic():
        for candidate in candidates:
            rule = candidate.rule
            key = rule_key(rule)
            digest = key_hash(key)
            row = existing.get(digest)
            if row is not None and row.status != RuleStatus.SUGGESTED:
                continue
            source_id = (
                int(dev_ids[candidate.source_index]) if candidate.source_index is not None else None
            )
            matches = np.asarray(candidate.matches, dtype=np.int64)
            evidence = {
                "source_example_id": source_id,
                "source_text": source_texts.get(source_id, ""),
                "answer_word": candidate.answer_word,
                "sample_example_ids": [int(pool_ids[i]) for i in candidate.sample_indices[:10]],
                "proposer": getattr(candidate, "proposer", ""),
            }
            stats = {
                "coverage": float(candidate.coverage),
                "pool_matches": int(matches.size),
                # shown: the one smoothed definition (apps.rules.precision) of these counts;
                # the proposer ranked by its own posterior (model-agreement prior)
                "dev_precision": dev_precision(
                    correct=int(getattr(candidate, "dev_correct", 0)),
                    matched=int(getattr(candidate, "dev_matches", 0)),
                ),
                "ranked_precision": float(candidate.dev_precision),
                "dev_matches": int(getattr(candidate, "dev_matches", 0)),
                "dev_correct": int(getattr(candidate, "dev_correct", 0)),
                "novelty": float(candidate.novelty),
                "score": float(candidate.score),
                "p_good": float(getattr(candidate, "p_good", 0.0)),
                **_overlap(matches, rule.label, accepted_matches, accepted_labels, candidate),
            }
            fields = {
                "kind": rule.kind,
                "definition": rule.to_dict(),
                "key": key,
                "label": rule.label,
                "description": describe(rule, project),
                "round_number": round_number,
                "evidence": evidence,
                "stats": stats,
                "score": float(candidate.score),
            }
            if row is None:
                row = Rule(
                    project=project,
                    key_hash=digest,
                    status=RuleStatus.SUGGESTED,
                    origin=RuleOrigin.PROPOSED,
                    decisions_needed=needed,
                    **fields,
                )
                row.save()
                existing[digest] = row
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
                row.version += 1
                row.save()
            stored.append(row)
    return stored


def _overlap(matches, label, accepted_matches, accepted_labels, candidate) -> dict[str, Any]:
    if not accepted_matches:
        return {"overlap": 1.0 - float(candidate.novelty), "conflict": None}
    if matches.size == 0:
        return {"overlap": 0.0, "conflict": 0.0}
    covered = np.zeros(matches.size, dtype=bool)
    conflicting = np.zeros(matches.size, dtype=bool)
    for rule_id, other in accepted_matches.items():
        hit = np.isin(matches, np.asarray(other, dtype=np.int64), assume_unique=True)
        covered |= hit
        if accepted_labels.get(rule_id, label) != label:
            conflicting |= hit
    return {"overlap": float(covered.mean()), "conflict": float(conflicting.mean())}
