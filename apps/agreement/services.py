"""Overlap labeling: each example is labeled by ``k`` annotators before it counts as gold.

Rules the services keep, whoever calls them:

- ``k = 1`` (no :class:`Overlap` row) changes nothing: gold labeling writes ``Example.gold_label``
  directly through ``apps.datasets.services.set_gold_label``.
- With ``k > 1`` a person's answer is an :class:`AnnotatorLabel`. When the ``k``-th answer comes
  in and all ``k`` agree, the example gets that gold label (and moves into its target split if
  it came from the pool). When they disagree, the example waits in the conflicts view, where a
  project admin adjudicates: the admin's label becomes the gold label.
- Each person answers an example once (answering again changes their answer while it is not
  gold yet); an example that already has a gold label refuses new answers.
- Undo removes the person's newest answer; a gold label that answer completed is taken back
  with it (split included). A gold label an admin set stays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.agreement.models import AnnotatorLabel, Overlap
from apps.datasets.models import Example, Split
from apps.datasets.services import (
    GOLD_SPLITS,
    GoldLabelConflict,
    label_name,
    release_claim,
    validate_label,
)
from apps.projects.models import Role
from apps.projects.selectors import role_in_project

MAX_OVERLAP = 10


@dataclass(frozen=True)
class VoteOutcome:
    """What one answer did: ``status`` is "recorded", "gold" or "conflict"."""

    example_id: int
    label: int
    status: str
    votes: int
    needed: int


def overlap_for(*, project) -> int:
    """The project's ``k`` (1 when never set)."""
    row = Overlap.objects.filter(project=project).only("k").first()
    return row.k if row else 1


def _require_member(*, project, user) -> str:
    role = role_in_project(user=user, project=project)
    if role is None:
        raise PermissionDenied("Only project members can label its examples.")
    return role


def _target_split(votes) -> str | None:
    """The split most answers asked for (pool examples labeled into dev or test)."""
    targets = Counter(vote.target_split for vote in votes if vote.target_split in GOLD_SPLITS)
    return targets.most_common(1)[0][0] if targets else None


def _write_gold(example: Example, *, label: int, user, split: str | None) -> None:
    example.gold_label = label
    if split and example.split == Split.POOL:
        example.split = split
    example.gold_labeled_by = user
    example.gold_labeled_at = timezone.now()
    example.save(update_fields=["gold_label", "split", "gold_labeled_by", "gold_labeled_at"])


def record_label(*, project, example: Example, user, label: int, split: str | None = None):
    """Record ``user``'s answer ``label`` on ``example``; a :class:`VoteOutcome`.

    ``split`` is the target split for a pool example (dev or test). Raises ValidationError
    (bad label or split), PermissionDenied (not a member) or GoldLabelConflict (the example is
    gold already; nothing changed).
    """
    if example.project_id != project.pk:
        raise ValidationError("This example does not belong to this project.")
    _require_member(project=project, user=user)
    label = validate_label(project=project, label=label)
    k = overlap_for(project=project)
    with transaction.atomic():
        current = Example.objects.select_for_update(of=("self",)).get(pk=example.pk)
        if current.gold_label is not None:
            raise GoldLabelConflict(
                example=current,
                message=(
                    f"Example {current.external_id} already has the gold label "
                    f"{label_name(project, current.gold_label)}; your label was not saved."
                ),
            )
        target = split or current.split
        if target != current.split and (current.split != Split.POOL or target not in GOLD_SPLITS):
            raise ValidationError(
                f"Only pool examples can move into dev or test; this one is in {current.split}."
            )
        AnnotatorLabel.objects.update_or_create(
            example=current,
            user=user,
            defaults={
                "project": project,
                "label": label,
                "source_split": current.split,
                "target_split": target,
            },
        )
        votes = list(AnnotatorLabel.objects.filter(example=current))
        status = "recorded"
        if len(votes) >= k:
            if len({vote.label for vote in votes}) == 1:
                _write_gold(current, label=label, user=user, split=_target_split(votes))
                status = "gold"
            else:
                status = "conflict"
    release_claim(example_id=example.pk, user=user)
    return VoteOutcome(
        example_id=example.pk, label=label, status=status, votes=len(votes), needed=k
    )


def undo_last_vote(*, project, user) -> AnnotatorLabel | None:
    """Remove ``user``'s newest answer in ``project``; the removed answer, or None.

    A gold label that this answer completed (written on the user's behalf) is cleared and the
    example goes back to its split. A gold label someone else set stays: GoldLabelConflict,
    nothing changed.
    """
    vote = (
        AnnotatorLabel.objects.filter(project=project, user=user)
        .select_related("example")
        .order_by("-id")
        .first()
    )
    if vote is None:
        return None
    with transaction.atomic():
        example = Example.objects.select_for_update(of=("self",)).get(pk=vote.example_id)
        if example.gold_label is not None:
            if example.gold_labeled_by_id != user.pk:
                raise GoldLabelConflict(
                    example=example,
                    message=(
                        f"Example {example.external_id} has a gold label set by someone else "
                        "since; nothing was undone."
                    ),
                )
            example.gold_label = None
            example.gold_labeled_by = None
            example.gold_labeled_at = None
            example.split = vote.source_split
            example.save(
                update_fields=["gold_label", "split", "gold_labeled_by", "gold_labeled_at"]
            )
        vote.delete()
    return vote


def adjudicate(*, project, example: Example, label: int, user) -> Example:
    """An admin decides a conflict: ``label`` becomes the example's gold label."""
    if example.project_id != project.pk:
        raise ValidationError("This example does not belong to this project.")
    if _require_member(project=project, user=user) != Role.ADMIN:
        raise PermissionDenied("Only project admins can decide conflicts.")
    label = validate_label(project=project, label=label)
    with transaction.atomic():
        current = Example.objects.select_for_update(of=("self",)).get(pk=example.pk)
        votes = list(AnnotatorLabel.objects.filter(example=current))
        _write_gold(current, label=label, user=user, split=_target_split(votes))
    return current


def set_overlap(*, project, k, user) -> int:
    """Set the project's ``k`` (1..MAX_OVERLAP, admins only); returns how many examples became
    gold because they now have enough agreeing answers."""
    if role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can change the overlap.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_OVERLAP:
        raise ValidationError(f"Overlap is a whole number from 1 to {MAX_OVERLAP}.")
    Overlap.objects.update_or_create(project=project, defaults={"k": k})
    ready = (
        AnnotatorLabel.objects.filter(project=project, example__gold_label__isnull=True)
        .values("example_id")
        .annotate(n=Count("id"), kinds=Count("label", distinct=True))
        .filter(n__gte=k, kinds=1)
        .values_list("example_id", flat=True)
    )
    done = 0
    for example_id in list(ready):
        with transaction.atomic():
            example = Example.objects.select_for_update(of=("self",)).get(pk=example_id)
            if example.gold_label is not None:
                continue
            votes = list(AnnotatorLabel.objects.filter(example=example).order_by("-id"))
            _write_gold(
                example, label=votes[0].label, user=votes[0].user, split=_target_split(votes)
            )
            done += 1
    return done


def has_votes(*, project, user) -> bool:
    return AnnotatorLabel.objects.filter(project=project, user=user).exists()
