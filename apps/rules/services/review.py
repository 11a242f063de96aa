"""The review of suggestions: leasing one suggestion to one annotator, recording decisions,
undoing them.

Concurrency, in short:

- :func:`next_suggestion_for` leases one suggested rule to one annotator for ``LEASE_SECONDS``.
  On PostgreSQL the row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent callers
  pass over each other's rows instead of waiting; on SQLite (one writer at a time anyway) a
  compare-and-set ``UPDATE`` on the lease columns does the same job.
- :func:`decide` bumps ``Rule.version`` with ``UPDATE ... WHERE version = expected``: the
  second of two decisions made on the same view of a rule changes nothing and raises
  :class:`RuleConflict`, whose message says who decided what and when. On PostgreSQL a decision
  that keeps the definition is that UPDATE and the decision's INSERT in one statement.

After a decision is written, :func:`~apps.rules.services.common.after_decision` says what
follows (the next round, when the project wants one).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.timesince import timesince

from apps.projects.models import Project
from apps.rules.models import DecisionAction, Rule, RuleDecision, RuleStatus
from apps.rules.selectors import current_round
from apps.rules.services.authoring import (
    apply_edits,
    duplicate_message,
    save_unique,
    set_definition,
)
from apps.rules.services.common import (
    RuleConflict,
    RuleInputError,
    after_decision,
    snapshot,
)

LEASE_SECONDS = 120
VOTING_ACTIONS = (DecisionAction.ACCEPT, DecisionAction.REJECT)
UNDOABLE_ACTIONS = (
    DecisionAction.ACCEPT,
    DecisionAction.REJECT,
    DecisionAction.SKIP,
    DecisionAction.EDIT,
)


def since(moment) -> str:
    """'just now' under a minute, else Django's timesince: '4 minutes ago', '2 hours ago'."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment, depth=1)} ago"


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
    return f"{who} already {_PAST[last.action]} this rule {since(last.created_at)}."


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
    """Record ``user``'s decision on ``rule`` (:func:`_record_decision`), then what follows it
    (:func:`after_decision`). Returns the rule as it is now."""
    rule = _record_decision(
        rule=rule, user=user, action=action, expected_version=expected_version, edits=edits
    )
    after_decision(project_id=rule.project_id, project=rule.project)
    return rule


def _record_decision(
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
        set_definition(current, new_definition, project=project)
        fields += ["definition", "kind", "label", "key", "key_hash", "description", "stats"]
        clash = Rule.objects.filter(project=project, key_hash=current.key_hash).exclude(pk=rule.pk)
        if clash.exists():
            raise RuleInputError(duplicate_message(project, current.key))
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
            set_definition(rule, before["definition"], project=project)
        if rule.status == RuleStatus.SUGGESTED:
            rule.decided_by = None
            rule.decided_at = None
            rule.claimed_by = user
            rule.claimed_until = timezone.now() + timedelta(seconds=LEASE_SECONDS)
        save_unique(rule, project=project)
        RuleDecision.objects.filter(pk=last.pk).update(undone=True)
        RuleDecision.objects.create(
            rule=rule,
            user=user,
            action=DecisionAction.UNDO,
            before=current,
            after=snapshot(rule),
        )
    after_decision(project_id=project.pk)
    return rule


def _undoable(*, project: Project, user):
    """The user's decisions that undo can take back: not undone yet, and not the creation of a
    hand-written rule (its "before" is empty; removing a rule is an admin's delete)."""
    return RuleDecision.objects.filter(
        rule__project=project, user=user, undone=False, action__in=UNDOABLE_ACTIONS
    ).exclude(before={})


def can_undo(*, project: Project, user) -> bool:
    return _undoable(project=project, user=user).exists()
