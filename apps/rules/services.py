"""Rules: handing out suggestions, recording decisions, writing and previewing rules.

Writes go through these functions (keyword-only arguments); views, the API and the round job
only translate to and from them. The round job (apps/training, workers) calls
:func:`store_suggestions` after proposing and :func:`accepted_rules` / :func:`judged_keys` before.

Concurrency, in short:

- :func:`next_suggestion_for` leases one suggested rule to one annotator for ``LEASE_SECONDS``.
  On PostgreSQL the row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent callers
  pass over each other's rows instead of waiting; on SQLite (one writer at a time anyway) a
  compare-and-set ``UPDATE`` on the lease columns does the same job.
- :func:`decide` bumps ``Rule.version`` with ``UPDATE ... WHERE version = expected``: the
  second of two decisions made on the same view of a rule changes nothing and raises
  :class:`RuleConflict`, whose message says who decided what and when.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain
from typing import Any

import numpy as np
import re2
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q
from django.db.models.signals import post_save
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from apps.datasets.models import Example, Split
from apps.projects.models import Project
from apps.rules.models import DecisionAction, Rule, RuleDecision, RuleOrigin, RuleStatus
from models.prboost.matching import (
    _SEP,
    Corpus,
    KeywordScanner,
    _codepoints,
    _is_word,
    match_rule,
)
from models.prboost.propose import rule_key
from models.prboost.rules import (
    KeywordRule,
    PromptRule,
    RegexRule,
    RuleError,
    _re2_options,
    compile_regex,
    normalize_text,
    normalize_word,
    regex_with_flags,
    rule_from_dict,
    validate_regex,
)

LEASE_SECONDS = 120
# Hand-written regexes are capped well below the engine's own limit: a pattern longer than
# this is not something a person types, and the live preview stays fast.
MAX_MANUAL_PATTERN_LENGTH = 500
PREVIEW_SAMPLES = 8
PREVIEW_TEXT_CHARS = 320
# A dense regex (most texts match) is counted on this many texts while typing (see preview_rule).
PREVIEW_DENSE_BUDGET = 20_000
MAX_DECISIONS_NEEDED = 9
VOTING_ACTIONS = (DecisionAction.ACCEPT, DecisionAction.REJECT)
UNDOABLE_ACTIONS = (
    DecisionAction.ACCEPT,
    DecisionAction.REJECT,
    DecisionAction.SKIP,
    DecisionAction.EDIT,
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


# ---------------------------------------------------------------------------------------------
# small helpers


def key_hash(key: str) -> str:
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


def label_names(project: Project) -> list[str]:
    return [str(name) for name in (project.labels or [])]


def describe(rule, project: Project) -> str:
    """The rule in plain words, with the project's label names and templates."""
    return rule.describe(label_names(project), _project_templates(project))


def _template_phrase(text: str) -> str:
    """A template as people read it: the example's slot dropped, the answer slot as "…"."""
    text = text.replace("{text}", "").replace("{mask}", "…").replace("<mask>", "…")
    text = text.replace("{e1}", "[entity 1]").replace("{e2}", "[entity 2]")
    text = " ".join(text.split())
    return text if "…" in text else f"{text} …"


def _project_templates(project: Project) -> dict[str, str]:
    """Template id → readable text: the library's templates, then the project's own
    (``settings["prboost"]["templates"]`` or ``settings["templates"]``: lists of {id, text})."""
    from models.prboost.templates import CANDIDATE_TEMPLATES, DEFAULT_MASK_TEMPLATES

    out: dict[str, str] = {}
    for group in (CANDIDATE_TEMPLATES, DEFAULT_MASK_TEMPLATES):
        for templates in group.values():
            for template in templates:
                out[template.id] = _template_phrase(template.text)
    settings_ = project.settings or {}
    prboost = settings_.get("prboost") if isinstance(settings_.get("prboost"), Mapping) else {}
    for custom in (prboost.get("templates"), settings_.get("templates")):
        if isinstance(custom, list):
            for item in custom:
                if isinstance(item, Mapping) and item.get("id") and item.get("text"):
                    out[str(item["id"])] = _template_phrase(str(item["text"]))
    return out


def snapshot(rule: Rule) -> dict[str, Any]:
    """What a decision records of the rule before and after it."""
    return {
        "status": rule.status,
        "definition": rule.definition,
        "label": rule.label,
        "description": rule.description,
        "version": rule.version,
    }


def ago(when) -> str:
    """'3 s ago', '4 min ago', '2 h ago', '5 days ago'."""
    seconds = max(0, int((timezone.now() - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


_PAST = {
    DecisionAction.ACCEPT: "accepted",
    DecisionAction.REJECT: "rejected",
    DecisionAction.SKIP: "skipped",
    DecisionAction.EDIT: "edited",
    DecisionAction.UNDO: "undid a decision on",
}


def conflict_message(rule: Rule, *, user) -> str:
    """Why a decision on a stale view of ``rule`` was refused, naming the last decision."""
    last = (
        RuleDecision.objects.filter(rule=rule)
        .exclude(action=DecisionAction.SKIP)
        .select_related("user")
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        return "This rule changed since you opened it; here is its current state."
    who = "You" if last.user_id == user.pk else (last.user.username if last.user else "someone")
    return f"{who} already {_PAST[last.action]} this rule {ago(last.created_at)}."


# ---------------------------------------------------------------------------------------------
# reads used by the screens and the round job


def current_round(*, project: Project) -> int | None:
    """The latest round that stored suggestions, ``None`` before the first."""
    return Rule.objects.filter(project=project, round_number__isnull=False).aggregate(
        n=Max("round_number")
    )["n"]


def review_progress(*, project: Project, round_number: int | None) -> dict[str, int]:
    """``{"reviewed": k, "total": n, "left": n - k}`` for the round's proposed rules."""
    if round_number is None:
        return {"reviewed": 0, "total": 0, "left": 0}
    counts = dict(
        Rule.objects.filter(project=project, round_number=round_number)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    total = sum(counts.values())
    left = counts.get(RuleStatus.SUGGESTED, 0)
    return {"reviewed": total - left, "total": total, "left": left}


def accepted_rules(*, project: Project) -> list:
    """The project's accepted rules as ``models.prboost`` rules, oldest first."""
    rows = Rule.objects.filter(project=project, status=RuleStatus.ACCEPTED).order_by("id")
    return [rule_from_dict(row.definition) for row in rows.only("definition")]


def accepted_rule_rows(*, project: Project) -> list[Rule]:
    """The accepted Rule rows, oldest first (same order as :func:`accepted_rules`)."""
    return list(Rule.objects.filter(project=project, status=RuleStatus.ACCEPTED).order_by("id"))


def judged_keys(*, project: Project) -> set[str]:
    """Keys of rules people already accepted or rejected (the proposer's ``judged``)."""
    return set(
        Rule.objects.filter(project=project)
        .exclude(status=RuleStatus.SUGGESTED)
        .values_list("key", flat=True)
    )


# ---------------------------------------------------------------------------------------------
# the review queue


def _lease_is_free(now) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def next_suggestion_for(*, project: Project, user, round_number: int | None = None) -> Rule | None:
    """The suggestion ``user`` should review now, leased to them; ``None`` when none is left.

    A suggestion the user already holds comes back first (a reload shows the same rule). Then
    the best-scored unleased suggestion of the round (default: the current round) that the user
    has not voted on or skipped; skipped ones come back when nothing else is left. Two callers
    at once never get the same rule.
    """
    if round_number is None:
        round_number = current_round(project=project)
        if round_number is None:
            return None
    now = timezone.now()
    queue = Rule.objects.filter(
        project=project, status=RuleStatus.SUGGESTED, round_number=round_number
    )
    held = queue.filter(claimed_by=user, claimed_until__gte=now).order_by("-score", "id").first()
    if held is not None:
        _extend_lease(held, user=user, now=now)
        return held
    mine = RuleDecision.objects.filter(rule__project=project, user=user, undone=False)
    voted = mine.filter(action__in=VOTING_ACTIONS).values("rule_id")
    skipped = mine.filter(action=DecisionAction.SKIP).values("rule_id")
    free = queue.filter(_lease_is_free(now)).exclude(pk__in=voted)
    for candidates in (free.exclude(pk__in=skipped), free):
        rule = _claim_first(candidates.order_by("-score", "id"), user=user, now=now)
        if rule is not None:
            return rule
    return None


def _extend_lease(rule: Rule, *, user, now) -> None:
    until = now + timedelta(seconds=LEASE_SECONDS)
    Rule.objects.filter(pk=rule.pk, claimed_by=user).update(claimed_until=until)
    rule.claimed_until = until


def _claim_first(candidates, *, user, now) -> Rule | None:
    until = now + timedelta(seconds=LEASE_SECONDS)
    if connection.vendor == "postgresql":
        with transaction.atomic():
            rule = candidates.select_for_update(skip_locked=True, of=("self",)).first()
            if rule is None:
                return None
            Rule.objects.filter(pk=rule.pk).update(claimed_by=user, claimed_until=until)
    else:
        # SQLite: no row locks. Compare-and-set on the lease; a lost race tries the next one.
        for rule in candidates[:20]:
            taken = (
                Rule.objects.filter(pk=rule.pk, status=RuleStatus.SUGGESTED)
                .filter(_lease_is_free(now))
                .update(claimed_by=user, claimed_until=until)
            )
            if taken:
                break
        else:
            return None
    rule.claimed_by = user
    rule.claimed_until = until
    return rule


def release_claim(*, rule: Rule, user) -> None:
    """Give the lease back (e.g. the annotator left the review screen)."""
    Rule.objects.filter(pk=rule.pk, claimed_by=user).update(claimed_by=None, claimed_until=None)


# ---------------------------------------------------------------------------------------------
# decisions


def decide(
    *,
    rule: Rule,
    user,
    action: str,
    expected_version: int,
    edits: Mapping[str, Any] | None = None,
) -> Rule:
    """Record ``user``'s decision on ``rule`` and return the rule as it is now.

    ``action``: accept, reject, skip, or edit (change the rule, keep it for review). ``edits``
    (with edit or accept) changes the label, words, pattern or threshold first (see
    :func:`apply_edits`). ``expected_version`` is the version the user saw; if the rule moved
    on since, nothing changes and :class:`RuleConflict` says who decided what, when.
    With ``decisions_needed`` > 1 a suggestion stays suggested until that many accept/reject
    votes are in; then its status is the majority (a tie rejects: a rule half the reviewers
    refuse is not trusted).
    """
    if action not in (*UNDOABLE_ACTIONS,):
        raise RuleInputError(f"unknown action {action!r}: use accept, reject, skip or edit")
    if edits and action not in (DecisionAction.ACCEPT, DecisionAction.EDIT):
        raise RuleInputError("edits go with 'edit' or 'accept'")
    if action == DecisionAction.EDIT and not edits:
        raise RuleInputError("an edit needs the changes (label, words, pattern or threshold)")
    try:
        expected_version = int(expected_version)
    except (TypeError, ValueError):
        raise RuleInputError("expected_version must be the rule's version number") from None
    if rule.version > expected_version:  # versions only grow: the caller's view is stale
        raise _conflict(rule, user=user, fresh=True)
    if rule.version < expected_version:  # the object in hand may be older than the caller's view
        rule = Rule.objects.filter(pk=rule.pk).select_related("project").first() or rule
        if rule.version != expected_version:
            raise _conflict(rule, user=user, fresh=True)
    project = rule.project
    new_definition = apply_edits(rule=rule, edits=edits) if edits else None
    if new_definition is not None and new_definition == rule.definition:
        if action == DecisionAction.EDIT:
            raise RuleInputError("nothing to save: the edit leaves the rule as it was")
        new_definition = None
    now = timezone.now()
    # The rule in hand is the rule at ``expected_version`` (every change bumps the version),
    # so the new state is computed here and written with one conditional UPDATE.
    current = copy.copy(rule)
    current.version = expected_version + 1
    current.updated_at = now
    fields = ["version", "updated_at", "claimed_by", "claimed_until"]
    if new_definition is not None:
        _set_definition(current, new_definition, project=project)
        fields += ["definition", "kind", "label", "key", "key_hash", "description"]
        clash = Rule.objects.filter(project=project, key_hash=current.key_hash).exclude(pk=rule.pk)
        if clash.exists():
            raise RuleInputError(_duplicate_message(project, current.key))
    if action in VOTING_ACTIONS:
        current.status = _status_after_vote(current, user=user, action=action)
        current.decided_by = user
        current.decided_at = now
        fields += ["status", "decided_by", "decided_at"]
    if action != DecisionAction.EDIT or current.claimed_by_id != user.pk:
        current.claimed_by = None
        current.claimed_until = None
    values = {name: getattr(current, name) for name in fields}
    if new_definition is None and connection.vendor == "postgresql":
        decision = _write_decision_pg(
            rule=current,
            expected_version=expected_version,
            values=values,
            user=user,
            action=action,
            before=snapshot(rule),
            now=now,
        )
        if decision is None:
            raise _conflict(rule, user=user)
        current.last_decision = decision
        return current
    at_version = Rule.objects.filter(pk=rule.pk, version=expected_version)
    with transaction.atomic():
        if new_definition is None:
            updated = at_version.update(**values)
        else:  # the new key may clash with a rule saved just now: keep the transaction usable
            try:
                with transaction.atomic():
                    updated = at_version.update(**values)
            except IntegrityError:
                raise RuleInputError("An identical rule was just saved in this project.") from None
        if not updated:
            raise _conflict(rule, user=user)
        current.last_decision = RuleDecision.objects.create(
            rule=current, user=user, action=action, before=snapshot(rule), after=snapshot(current)
        )
    return current


def _write_decision_pg(
    *, rule: Rule, expected_version: int, values: dict, user, action: str, before: dict, now
) -> RuleDecision | None:
    """The conditional UPDATE and the decision's INSERT as one statement (one round trip, atomic
    on its own): nothing is written unless the rule is still at ``expected_version``."""
    columns = [Rule._meta.get_field(name).column for name in values]
    params = [
        getattr(value, "pk", value) if name in ("claimed_by", "decided_by") else value
        for name, value in values.items()
    ]
    after = snapshot(rule)
    # Table and column names come from the model, values are all parameters.
    assignments = ", ".join(f'"{column}" = %s' for column in columns)
    sql = (
        f"WITH updated AS (UPDATE {Rule._meta.db_table} SET {assignments} "  # noqa: S608
        "WHERE id = %s AND version = %s RETURNING id) "
        f"INSERT INTO {RuleDecision._meta.db_table} "  # noqa: S608
        '("rule_id", "user_id", "action", "before", "after", "created_at", "undone") '
        "SELECT id, %s, %s, %s::jsonb, %s::jsonb, %s, false FROM updated RETURNING id"
    )
    params += [rule.pk, expected_version, user.pk, action, json.dumps(before)]
    params += [json.dumps(after), now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    decision = RuleDecision(
        pk=row[0], rule=rule, user=user, action=action, before=before, after=after, created_at=now
    )
    decision._state.adding = False
    decision._state.db = connection.alias
    # Receivers of RuleDecision saves (e.g. apps.training's automatic next round) hear of this
    # one as of any other.
    post_save.send(
        sender=RuleDecision,
        instance=decision,
        created=True,
        update_fields=None,
        raw=False,
        using=connection.alias,
    )
    return decision


def _conflict(rule: Rule, *, user, fresh: bool = False) -> RuleConflict:
    """The error for a decision on a stale version (``fresh``: ``rule`` was just read)."""
    current = rule if fresh else Rule.objects.filter(pk=rule.pk).select_related("project").first()
    if current is None:
        return RuleConflict("This rule was deleted.")
    return RuleConflict(conflict_message(current, user=user), rule=current)


def _status_after_vote(rule: Rule, *, user, action: str) -> str:
    if rule.decisions_needed <= 1:
        return RuleStatus.ACCEPTED if action == DecisionAction.ACCEPT else RuleStatus.REJECTED
    # Each reviewer's latest standing vote counts once; this vote replaces theirs.
    votes = dict(
        RuleDecision.objects.filter(rule=rule, undone=False, action__in=VOTING_ACTIONS)
        .order_by("created_at", "id")
        .values_list("user_id", "action")
    )
    votes[user.pk] = action
    if len(votes) < rule.decisions_needed:
        return RuleStatus.SUGGESTED
    accepts = sum(1 for a in votes.values() if a == DecisionAction.ACCEPT)
    return RuleStatus.ACCEPTED if accepts * 2 > len(votes) else RuleStatus.REJECTED


def undo_last_decision(*, project: Project, user) -> Rule | None:
    """Undo ``user``'s latest decision in the project; returns the rule, ``None`` if none.

    The rule goes back to what it was before that decision (status, definition) and, when it
    is a suggestion again, back to the user's lease so the review screen shows it. Refused with
    :class:`RuleConflict` when someone else changed the rule since.
    """
    with transaction.atomic():
        last = (
            _undoable(project=project, user=user)
            .select_related("rule")
            .order_by("-created_at", "-id")
            .first()
        )
        if last is None:
            return None
        rule = last.rule
        after_version = (last.after or {}).get("version")
        if last.action == DecisionAction.SKIP:
            RuleDecision.objects.filter(pk=last.pk).update(undone=True)
            now = timezone.now()
            if rule.status == RuleStatus.SUGGESTED:
                Rule.objects.filter(pk=rule.pk).filter(
                    _lease_is_free(now) | Q(claimed_by=user)
                ).update(claimed_by=user, claimed_until=now + timedelta(seconds=LEASE_SECONDS))
            rule.refresh_from_db()
            return rule
        bumped = Rule.objects.filter(pk=rule.pk, version=after_version).update(
            version=F("version") + 1, updated_at=timezone.now()
        )
        if not bumped:
            rule.refresh_from_db()
            raise RuleConflict(
                "Cannot undo: " + conflict_message(rule, user=user).rstrip(".") + " since.",
                rule=rule,
            )
        rule.refresh_from_db()
        current = snapshot(rule)
        before = last.before or {}
        rule.status = before.get("status", rule.status)
        if before.get("definition") and before["definition"] != rule.definition:
            _set_definition(rule, before["definition"], project=project)
        if rule.status == RuleStatus.SUGGESTED:
            rule.decided_by = None
            rule.decided_at = None
            rule.claimed_by = user
            rule.claimed_until = timezone.now() + timedelta(seconds=LEASE_SECONDS)
        _save_unique(rule, project=project)
        RuleDecision.objects.filter(pk=last.pk).update(undone=True)
        RuleDecision.objects.create(
            rule=rule,
            user=user,
            action=DecisionAction.UNDO,
            before=current,
            after=snapshot(rule),
        )
    return rule


def _undoable(*, project: Project, user):
    """The user's decisions that undo can take back: not undone yet, and not the creation of a
    hand-written rule (its "before" is empty; removing a rule is an admin's delete)."""
    return RuleDecision.objects.filter(
        rule__project=project, user=user, undone=False, action__in=UNDOABLE_ACTIONS
    ).exclude(before={})


def can_undo(*, project: Project, user) -> bool:
    return _undoable(project=project, user=user).exists()


# ---------------------------------------------------------------------------------------------
# building and editing rules


def _words(value) -> tuple[str, ...]:
    """Words from a list or from text separated by commas or new lines."""
    if isinstance(value, str):
        parts = re.split(r"[,\n]", value)
    elif isinstance(value, Sequence):
        parts = [str(v) for v in value]
    else:
        raise RuleInputError("words must be a list or text separated by commas")
    words = tuple(p.strip() for p in parts if p.strip())
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


def _set_definition(rule: Rule, definition: Mapping[str, Any], *, project: Project) -> None:
    built = rule_from_dict(definition)
    rule.definition = built.to_dict()
    rule.kind = built.kind
    rule.label = built.label
    rule.key = rule_key(built)
    rule.key_hash = key_hash(rule.key)
    rule.description = describe(built, project)


def _save_unique(rule: Rule, *, project: Project) -> None:
    """Save the rule; RuleInputError (naming the other rule) if its key is another rule's."""
    clash = Rule.objects.filter(project=project, key_hash=rule.key_hash).exclude(pk=rule.pk)
    if clash.exists():
        raise RuleInputError(_duplicate_message(project, rule.key))
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:  # the same rule saved by someone else just now
        raise RuleInputError("An identical rule was just saved in this project.") from None


def _duplicate_message(project: Project, key: str) -> str:
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
        raise RuleInputError(_duplicate_message(project, key))
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
        raise RuleInputError(_duplicate_message(project, key)) from None
    return rule


def delete_rule(*, rule: Rule) -> None:
    """Remove a rule and its decision history (admins only; the views check)."""
    rule.delete()


# ---------------------------------------------------------------------------------------------
# the live preview


@dataclass
class ProjectTexts:
    """Every example of a project as one matching corpus, in id order (cached per process).

    For keyword rules it also keeps the texts normalized once and joined (the work the engine's
    keyword scanner repeats on every call), so a preview is one Aho-Corasick pass.
    """

    ids: np.ndarray  # (N,) int64, sorted
    splits: np.ndarray  # (N,) int8: 0 pool, 1 dev, 2 test
    corpus: Corpus
    _joined: dict = field(default_factory=dict, repr=False)

    def joined_bytes(self) -> tuple[bytes, list[int], list[int]]:
        """(raw texts as UTF-8 joined by newlines, byte offset of each text, byte lengths)."""
        hit = self._joined.get("bytes")
        if hit is None:
            encoded = [t.encode("utf-8", "surrogatepass") for t in self.corpus.texts]
            lengths = [len(e) for e in encoded]
            starts = np.zeros(len(encoded), dtype=np.int64)
            if encoded:
                np.cumsum(np.asarray(lengths[:-1], dtype=np.int64) + 1, out=starts[1:])
            hit = (b"\n".join(encoded), starts.tolist(), lengths)
            self._joined["bytes"] = hit
        return hit

    def joined(self, case_sensitive: bool) -> tuple[str, np.ndarray, np.ndarray]:
        """(normalized texts joined by NUL, (C,) is-word-char mask, (N-1,) separator offsets)."""
        hit = self._joined.get(case_sensitive)
        if hit is None:
            texts = [t.replace(_SEP, " ") for t in self.corpus.texts]
            joined = _SEP.join(normalize_text(t, case_sensitive) for t in texts)
            cps = _codepoints(joined)
            hit = (joined, _is_word(cps), np.flatnonzero(cps == 0))
            self._joined[case_sensitive] = hit
        return hit


def _keyword_matches(rule: KeywordRule, texts: ProjectTexts) -> np.ndarray:
    """The engine's keyword matching (same normalization, automaton and word boundaries) on the
    cached joined texts: sorted positions of the examples ``rule`` matches."""
    joined, is_word, seps = texts.joined(rule.case_sensitive)
    words = list(dict.fromkeys(rule.normalized_words))
    scanner = KeywordScanner(words, rule.case_sensitive)
    flat = np.fromiter(chain.from_iterable(scanner.automaton.iter(joined)), dtype=np.int64)
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends, wids = flat[0::2], flat[1::2]
    starts = ends - scanner.length[wids] + 1
    ok = np.ones(ends.shape, dtype=bool)
    check = scanner.needs_left[wids] & (starts > 0)
    ok[check] = ~is_word[starts[check] - 1]
    check = scanner.needs_right[wids] & (ends + 1 < is_word.size)
    ok[check] &= ~is_word[ends[check] + 1]
    docs = np.searchsorted(seps, starts[ok]).astype(np.int64)
    if rule.mode == "all" and len(words) > 1:
        pairs = np.unique(docs * len(words) + wids[ok])
        found, counts = np.unique(pairs // len(words), return_counts=True)
        return found[counts >= len(words)]
    return np.unique(docs)


# Past this share of matched examples, per-text RE2 (the engine) is cheaper than searching the
# joined texts match by match.
_DENSE_SHARE = 0.15


def _regex_matches(
    rule: RegexRule, texts: ProjectTexts, *, budget: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted positions of the examples ``rule`` matches, the engine's answer, found by RE2
    searches over the cached joined texts (one search per matched example instead of one per
    example).

    The texts are joined with newlines and searched with the ``m`` flag added, so ``^``/``$``
    match at every text edge: every match inside one text is found at its place (``\b`` sees
    the newline as a text edge does). A hit that runs past its text, or any hit of a pattern
    with ``^``/``$`` (which the ``m`` flag widened), is checked on that text alone with the
    rule's own pattern. After each hit the search resumes at the next text, so a match that
    runs over cannot hide a later one. Dense patterns switch to the engine for the rest; with
    a ``budget`` (the live preview) the engine only looks at an even sample of about ``budget``
    of the remaining texts plus every dev text.

    Returns (matched positions, the positions looked at, or None when all were).
    """
    pattern = rule.pattern
    if "\\A" in pattern or "\\z" in pattern:  # text-edge anchors: no joined equivalent
        return match_rule(rule, texts.corpus), None
    joined, starts, lengths = texts.joined_bytes()
    n = len(lengths)
    wide = re2.compile(regex_with_flags(pattern, rule.flags + "m").encode("utf-8"), _re2_options())
    anchored = ("^" in pattern or "$" in pattern) and "m" not in rule.flags
    found: list[int] = []
    check: list[int] = []
    looked: np.ndarray | None = None
    pos = 0
    search = wide.search
    while True:
        hit = search(joined, pos)
        if hit is None:
            break
        doc = bisect.bisect_right(starts, hit.start()) - 1
        if anchored or hit.end() > starts[doc] + lengths[doc]:
            check.append(doc)
        else:
            found.append(doc)
        if doc + 1 >= n:
            break
        hits = len(found) + len(check)
        if hits > 500 and hits > _DENSE_SHARE * (doc + 1):
            rest = np.arange(doc + 1, n, dtype=np.int64)
            if budget is not None and rest.size > budget:
                stride = -(-rest.size // budget)
                rest = np.union1d(rest[::stride], rest[texts.splits[rest] == 1])
                looked = np.concatenate([np.arange(doc + 1, dtype=np.int64), rest])
            sub = Corpus(texts=[texts.corpus.texts[i] for i in rest])
            found.extend(int(rest[i]) for i in match_rule(rule, sub))
            break
        pos = starts[doc + 1]
    if check:
        exact = rule.compile()
        found.extend(i for i in check if exact.search(texts.corpus.texts[i]))
    return np.unique(np.asarray(found, dtype=np.int64)), looked


def _match(
    rule, texts: ProjectTexts, *, budget: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(matched positions, positions looked at or None for all) for one rule."""
    if isinstance(rule, KeywordRule) and rule.scope == "text":
        return _keyword_matches(rule, texts), None
    if isinstance(rule, RegexRule) and rule.scope == "text":
        return _regex_matches(rule, texts, budget=budget)
    return match_rule(rule, texts.corpus), None


_SPLIT_CODES = {Split.POOL: 0, Split.DEV: 1, Split.TEST: 2}
_texts_cache: dict[int, tuple[tuple, ProjectTexts]] = {}
_texts_lock = threading.Lock()

# Optional: a function (project, example_ids) -> answer index for these examples in this order
# (models.prboost.matching.AnswerIndexLike) or None, registered by the app that owns the
# language-model cache, so that prompt rules can be previewed live too.
ANSWER_INDEX_PROVIDER: Callable[[Project, np.ndarray], Any] | None = None


def register_answer_index_provider(provider: Callable[[Project, np.ndarray], Any] | None) -> None:
    global ANSWER_INDEX_PROVIDER
    ANSWER_INDEX_PROVIDER = provider
    with _texts_lock:
        _texts_cache.clear()


def _texts_signature(project: Project) -> tuple:
    agg = Example.objects.filter(project=project).aggregate(n=Count("id"), top=Max("id"))
    # Splits move (gold labeling moves pool examples into dev): count dev/test in the key too.
    moved = Example.objects.filter(project=project, split__in=[Split.DEV, Split.TEST]).aggregate(
        n=Count("id"), top=Max("id")
    )
    return (agg["n"], agg["top"], moved["n"], moved["top"])


def project_texts(*, project: Project) -> ProjectTexts:
    """The project's texts as a Corpus, loaded once per process and reloaded when examples are
    added, removed or change split (key: counts and max ids overall and of dev+test)."""
    signature = _texts_signature(project)
    with _texts_lock:
        hit = _texts_cache.get(project.pk)
        if hit is not None and hit[0] == signature:
            return hit[1]
    rows = Example.objects.filter(project=project).order_by("id").values_list("id", "split", "text")
    ids, splits, texts = [], [], []
    for pk, split, text in rows.iterator(chunk_size=20000):
        ids.append(pk)
        splits.append(_SPLIT_CODES.get(split, 0))
        texts.append(text)
    id_array = np.asarray(ids, dtype=np.int64)
    answer_index = ANSWER_INDEX_PROVIDER(project, id_array) if ANSWER_INDEX_PROVIDER else None
    loaded = ProjectTexts(
        ids=id_array,
        splits=np.asarray(splits, dtype=np.int8),
        corpus=Corpus(texts=texts, answer_index=answer_index),
    )
    with _texts_lock:
        _texts_cache[project.pk] = (signature, loaded)
    return loaded


def forget_project_texts(*, project_id: int | None = None) -> None:
    with _texts_lock:
        if project_id is None:
            _texts_cache.clear()
        else:
            _texts_cache.pop(project_id, None)


@dataclass
class PreviewSample:
    example_id: int
    html: SafeString
    gold: str | None = None


@dataclass
class Preview:
    """What a rule matches: counts per split, dev precision, a few highlighted pool matches."""

    description: str = ""
    pool_total: int = 0
    pool_matches: int = 0
    dev_matches: int = 0
    dev_labeled: int = 0
    dev_correct: int = 0
    test_matches: int = 0
    samples: list[PreviewSample] = field(default_factory=list)
    error: str = ""
    elapsed_ms: float = 0.0
    estimated: bool = False  # pool/test counts scaled up from ``looked_at`` texts
    looked_at: int = 0

    @property
    def coverage(self) -> float:
        return self.pool_matches / self.pool_total if self.pool_total else 0.0

    @property
    def dev_precision(self) -> float | None:
        """Raw share of the matched gold dev examples that carry the rule's label."""
        return self.dev_correct / self.dev_labeled if self.dev_labeled else None

    @property
    def coverage_text(self) -> str:
        return f"{100 * self.coverage:.1f}%"

    @property
    def dev_precision_text(self) -> str:
        value = self.dev_precision
        return "—" if value is None else f"{100 * value:.0f}%"

    @property
    def dev_precision_smoothed(self) -> float:
        """Posterior mean under a Beta(1, 1) prior (what the proposer ranks by)."""
        return (self.dev_correct + 1) / (self.dev_labeled + 2)

    def stats(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage,
            "pool_matches": self.pool_matches,
            "dev_matches": self.dev_matches,
            "dev_labeled": self.dev_labeled,
            "dev_correct": self.dev_correct,
            "dev_precision": self.dev_precision_smoothed,
            "dev_precision_raw": self.dev_precision,
            "test_matches": self.test_matches,
        }


def preview_rule(
    *,
    project: Project,
    definition: Mapping[str, Any],
    samples: int = PREVIEW_SAMPLES,
    exact: bool = False,
) -> Preview:
    """Match one rule on all the project's examples and summarize (the live preview).

    A regex that matches most texts costs one RE2 pass per text; unless ``exact``, such a
    pattern is counted on an even sample of ``PREVIEW_DENSE_BUDGET`` texts plus every dev text,
    and the pool/test counts are scaled up (``Preview.estimated``; dev counts stay exact).
    Never raises for a bad rule: ``Preview.error`` carries the message instead.
    """
    started = time.perf_counter()
    try:
        rule = rule_from_dict(definition)
    except RuleError as exc:
        return Preview(error=str(exc))
    if isinstance(rule, RegexRule) and len(rule.pattern) > MAX_MANUAL_PATTERN_LENGTH:
        return Preview(error=f"the pattern is longer than {MAX_MANUAL_PATTERN_LENGTH} characters")
    texts = project_texts(project=project)
    if isinstance(rule, PromptRule) and texts.corpus.answer_index is None and ANSWER_INDEX_PROVIDER:
        # The language-model cache may have been warmed since the texts were loaded.
        texts.corpus.answer_index = ANSWER_INDEX_PROVIDER(project, texts.ids)
    preview = Preview(description=describe(rule, project))
    preview.pool_total = int((texts.splits == 0).sum())
    try:
        matched, looked = _match(rule, texts, budget=None if exact else PREVIEW_DENSE_BUDGET)
    except RuleError as exc:
        preview.error = str(exc)
        if isinstance(rule, PromptRule):
            preview.error = (
                "live counts for prompt rules need the project's language-model cache; the "
                "numbers shown are from when the rule was proposed"
            )
        return preview
    split_of = texts.splits[matched]
    pool_positions = matched[split_of == 0]
    dev_ids = texts.ids[matched[split_of == 1]]
    preview.pool_matches = int(pool_positions.size)
    preview.dev_matches = int(dev_ids.size)
    preview.test_matches = int((split_of == 2).sum())
    if looked is not None:
        preview.estimated = True
        preview.looked_at = int(looked.size)
        seen = np.bincount(texts.splits[looked], minlength=3)
        total = np.bincount(texts.splits, minlength=3)
        for split, name in ((0, "pool_matches"), (2, "test_matches")):
            if seen[split]:
                scaled_count = getattr(preview, name) * total[split] / seen[split]
                setattr(preview, name, int(round(scaled_count)))
    if dev_ids.size:
        golds = list(
            Example.objects.filter(
                project=project, pk__in=dev_ids.tolist(), gold_label__isnull=False
            ).values_list("gold_label", flat=True)
        )
        preview.dev_labeled = len(golds)
        preview.dev_correct = sum(1 for g in golds if g == rule.label)
    sample_positions = _spread(pool_positions, samples)
    preview.samples = [
        PreviewSample(
            example_id=int(texts.ids[i]),
            html=highlight_rule(rule, texts.corpus.texts[i], max_chars=PREVIEW_TEXT_CHARS),
        )
        for i in sample_positions
    ]
    preview.elapsed_ms = (time.perf_counter() - started) * 1000
    return preview


def _spread(positions: np.ndarray, k: int) -> list[int]:
    """Up to k positions spread evenly over the matches (not just the first few examples)."""
    if positions.size <= k:
        return [int(i) for i in positions]
    picks = np.linspace(0, positions.size - 1, k).round().astype(np.int64)
    return [int(positions[i]) for i in np.unique(picks)]


def _keyword_pattern(rule: KeywordRule) -> re.Pattern | None:
    parts = []
    for word in rule.words:
        pieces = [re.escape(w) for w in normalize_word(word, rule.case_sensitive).split(" ") if w]
        if not pieces:
            continue
        body = r"\s+".join(pieces)
        left = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
        right = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
        parts.append(left + body + right)
    if not parts:
        return None
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts), 0 if rule.case_sensitive else re.IGNORECASE)


def match_spans(rule, text: str, limit: int = 50) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mark for ``rule`` (keyword hits, regex matches)."""
    spans: list[tuple[int, int]] = []
    if isinstance(rule, KeywordRule):
        pattern = _keyword_pattern(rule)
        if pattern is not None:
            spans = [m.span() for m in pattern.finditer(text)]
    elif isinstance(rule, RegexRule):
        compiled = compile_regex(rule.pattern, rule.flags)
        for m in compiled.finditer(text):
            if m.end() > m.start():
                spans.append((m.start(), m.end()))
            if len(spans) >= limit:
                break
    elif isinstance(rule, PromptRule):
        pattern = _keyword_pattern(KeywordRule(words=rule.answer_words, label=rule.label))
        if pattern is not None:
            spans = [m.span() for m in pattern.finditer(text)]
    return spans[:limit]


def highlight_rule(rule, text: str, *, max_chars: int | None = None) -> SafeString:
    """``text`` HTML-escaped with the rule's matches in ``<mark>``, cut around the first match."""
    text = text or ""
    spans = match_spans(rule, text)
    start, end = 0, len(text)
    prefix = suffix = ""
    if max_chars and len(text) > max_chars:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - max_chars // 3, len(text) - max_chars))
        end = start + max_chars
        prefix = "…" if start > 0 else ""
        suffix = "…" if end < len(text) else ""
    out = [prefix]
    pos = start
    for a, b in spans:
        if b <= pos or a >= end:
            continue
        a = max(a, pos)
        b = min(b, end)
        out.append(escape(text[pos:a]))
        out.append(f"<mark>{escape(text[a:b])}</mark>")
        pos = b
    out.append(escape(text[pos:end]))
    out.append(suffix)
    return mark_safe("".join(out))  # noqa: S308 - every piece of text is escaped above


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
                "dev_precision": float(candidate.dev_precision),
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


def sample_examples(*, project: Project, ids: Sequence[int]) -> list[Example]:
    """The examples with these ids, in that order (only the project's)."""
    found = Example.objects.filter(project=project, pk__in=list(ids)).only(
        "id", "text", "split", "gold_label", "external_id"
    )
    by_id = {e.pk: e for e in found}
    return [by_id[i] for i in ids if i in by_id]
