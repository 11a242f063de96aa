"""Gold labeling: set and undo a person's gold label, and hand out the next example to label.

Rules the services keep, whoever calls them (browser, API, scripts):

- A label is an index into ``project.labels``; anything else is refused and changes nothing.
- A gold label never silently replaces another person's (or an imported) gold label: the
  second person gets :class:`GoldLabelConflict`. Replacing it on purpose takes ``overwrite=True``
  and the admin role. People may change their own labels freely.
- Pool examples may be labeled *into* dev or test (``split=``): most projects arrive without a
  gold dev set, so labeling pool examples is how one is built. Dev/test examples keep their split.
- Undo: each call to :func:`set_gold_label` returns a :class:`GoldLabelChange` carrying the state
  before it. The browser keeps these on a per-user stack in the session (``history``, newest
  last) and :func:`undo_last_gold_label` restores the newest — split included, so a pool example
  labeled into dev goes back to the pool. Without a history (API clients, scripts) undo clears the
  user's most recent gold label in the project (the split stays as it is).
- Two annotators are not handed the same example at the same moment: the next example is drawn at
  random among the unlabeled ones and claimed for ``LABEL_CLAIM_SECONDS`` in Django's cache
  (shared by all web processes when the cache is Redis or the database; per process with the
  default local-memory cache, where the random draw alone keeps collisions rare).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from apps.datasets.models import Example, Split
from apps.datasets.selectors import label_candidates, least_sure_first
from apps.frugal import cache as fallible_cache
from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project

LABEL_CLAIM_SECONDS = 120
UNDO_HISTORY_LIMIT = 200
GOLD_SPLITS = (Split.DEV, Split.TEST)


class GoldLabelConflict(Exception):
    """Someone else's gold label is already on the example; nothing was changed."""

    def __init__(self, *, example: Example, message: str):
        super().__init__(message)
        self.example = example
        self.message = message


@dataclass
class GoldLabelChange:
    """One gold-label decision and the state it replaced (what undo restores)."""

    example_id: int
    project_id: int
    user_id: int
    label: int | None
    split: str
    previous_label: int | None
    previous_split: str
    previous_by_id: int | None
    previous_at: str | None  # ISO 8601

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GoldLabelChange:
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


def label_name(project, index: int | None) -> str:
    if index is None:
        return "none"
    labels = project.labels or []
    return str(labels[index]) if 0 <= index < len(labels) else f"#{index}"


def validate_label(*, project, label) -> int:
    """The label as an index into ``project.labels``; ValidationError otherwise."""
    labels = project.labels or []
    if isinstance(label, bool) or not isinstance(label, int):
        raise ValidationError(f"A label is a number from 0 to {len(labels) - 1}, not {label!r}.")
    if not 0 <= label < len(labels):
        if not labels:
            raise ValidationError("This project has no labels yet; set them in its settings.")
        raise ValidationError(
            f"Label {label} is out of range: this project's labels are 0..{len(labels) - 1} "
            f"({', '.join(str(name) for name in labels)})."
        )
    return label


def _conflict_message(project, current: Example) -> str:
    who = current.gold_labeled_by.username if current.gold_labeled_by else "an import"
    when = (
        f" at {timezone.localtime(current.gold_labeled_at):%Y-%m-%d %H:%M}"
        if current.gold_labeled_at
        else ""
    )
    return (
        f"Example {current.external_id} already has the gold label "
        f"{label_name(project, current.gold_label)} (set by {who}{when}); your label was not saved."
    )


def set_gold_label(
    *,
    example: Example,
    label: int | None,
    user,
    split: str | None = None,
    overwrite: bool = False,
    project=None,
) -> GoldLabelChange:
    """Give ``example`` the gold label ``label`` (``None`` clears it) on behalf of ``user``.

    ``split`` moves a pool example into dev or test as it is labeled. ``project``, when given,
    must be the example's project. Raises ValidationError (bad label, split or project),
    PermissionDenied (not a member; overwriting others' labels without being admin) or
    GoldLabelConflict (someone else's gold label is there and ``overwrite`` is False).
    """
    project = project or example.project
    if example.project_id != project.pk:
        raise ValidationError("This example does not belong to this project.")
    role = role_in_project(user=user, project=project)
    if role is None:
        raise PermissionDenied("Only project members can label its examples.")
    if label is not None:
        label = validate_label(project=project, label=label)
    if split is not None and split not in {choice.value for choice in Split}:
        raise ValidationError(f"Unknown split {split!r}: use dev or test.")

    with transaction.atomic():
        current = (
            Example.objects.select_for_update(of=("self",))
            .select_related("gold_labeled_by")
            .get(pk=example.pk)
        )
        target_split = split or current.split
        moving = target_split != current.split
        if moving and (current.split != Split.POOL or target_split not in GOLD_SPLITS):
            raise ValidationError(
                f"Only pool examples can move into dev or test; this one is in {current.split}."
            )
        if label is None and target_split != current.split:
            raise ValidationError("Moving an example into dev or test needs a label.")
        others_label = current.gold_label is not None and current.gold_labeled_by_id != user.pk
        if others_label:
            if not overwrite:
                raise GoldLabelConflict(
                    example=current, message=_conflict_message(project, current)
                )
            if role != Role.ADMIN:
                raise PermissionDenied("Only project admins can replace another person's label.")
        change = GoldLabelChange(
            example_id=current.pk,
            project_id=project.pk,
            user_id=user.pk,
            label=label,
            split=target_split,
            previous_label=current.gold_label,
            previous_split=current.split,
            previous_by_id=current.gold_labeled_by_id,
            previous_at=current.gold_labeled_at.isoformat() if current.gold_labeled_at else None,
        )
        current.gold_label = label
        current.split = target_split
        current.gold_labeled_by = user if label is not None else None
        current.gold_labeled_at = timezone.now() if label is not None else None
        # The project is unchanged and the labeler is the user in hand: no need to ask the
        # database whether those two rows exist (two queries a label).
        current.full_clean(
            exclude=["project", "gold_labeled_by"],
            validate_unique=False,
            validate_constraints=False,
        )
        current.save(update_fields=["gold_label", "split", "gold_labeled_by", "gold_labeled_at"])
    release_claim(example_id=current.pk, user=user)
    example.gold_label, example.split = current.gold_label, current.split
    example.gold_labeled_by, example.gold_labeled_at = (
        current.gold_labeled_by,
        current.gold_labeled_at,
    )
    return change


def push_history(history: list, change: GoldLabelChange) -> None:
    """Append ``change`` to a session undo stack, keeping the newest ``UNDO_HISTORY_LIMIT``."""
    history.append(change.to_dict())
    del history[:-UNDO_HISTORY_LIMIT]


def undo_last_gold_label(*, project, user, history: list | None = None) -> GoldLabelChange | None:
    """Undo ``user``'s newest gold label in ``project``; the undone change, or None.

    With ``history`` (a session stack of :meth:`GoldLabelChange.to_dict`, newest last) the
    newest entry of this project is popped and its example restored to its previous label,
    author and split. An example relabeled by someone else since is left alone
    (GoldLabelConflict; the entry is dropped). Without ``history`` the user's most recent gold
    label in the project is cleared.
    """
    if history is None:
        example = (
            Example.objects.filter(project=project, gold_labeled_by=user, gold_label__isnull=False)
            .order_by("-gold_labeled_at", "-id")
            .first()
        )
        if example is None:
            return None
        change = GoldLabelChange(
            example_id=example.pk,
            project_id=project.pk,
            user_id=user.pk,
            label=None,
            split=example.split,
            previous_label=example.gold_label,
            previous_split=example.split,
            previous_by_id=user.pk,
            previous_at=example.gold_labeled_at.isoformat() if example.gold_labeled_at else None,
        )
        Example.objects.filter(pk=example.pk, gold_labeled_by=user).update(
            gold_label=None, gold_labeled_by=None, gold_labeled_at=None
        )
        return change

    for position in range(len(history) - 1, -1, -1):
        entry = history[position]
        if entry.get("project_id") == project.pk and entry.get("user_id") == user.pk:
            break
    else:
        return None
    change = GoldLabelChange.from_dict(history.pop(position))
    restored_by = change.previous_by_id
    restored_at = datetime.fromisoformat(change.previous_at) if change.previous_at else None
    with transaction.atomic():
        current = (
            Example.objects.select_for_update(of=("self",))
            .select_related("gold_labeled_by")
            .filter(pk=change.example_id, project=project)
            .first()
        )
        if current is None:
            return None
        ours = current.gold_label == change.label and (
            current.gold_labeled_by_id == (user.pk if change.label is not None else None)
        )
        if not ours:
            raise GoldLabelConflict(
                example=current,
                message=(
                    f"Example {current.external_id} was relabeled by someone else since; "
                    "nothing was undone."
                ),
            )
        current.gold_label = change.previous_label
        current.gold_labeled_by_id = restored_by if change.previous_label is not None else None
        current.gold_labeled_at = restored_at if change.previous_label is not None else None
        current.split = change.previous_split
        current.save(update_fields=["gold_label", "split", "gold_labeled_by", "gold_labeled_at"])
    return change


# --- handing out examples -------------------------------------------------------------------


def _claim_key(example_id: int) -> str:
    return f"frugal:label-claim:{example_id}"


def claim_example(*, example_id: int, user) -> bool:
    """Claim the example for ``user`` for a short while; False when someone else holds it."""
    key = _claim_key(example_id)
    added = fallible_cache.add(key, user.pk, timeout=LABEL_CLAIM_SECONDS)
    if added is None:
        # No cache (Redis down): labeling goes on without claims. Two people may then see the
        # same example, and the second answer is refused, never silently written over.
        return True
    if added:
        return True
    if fallible_cache.get(key) == user.pk:
        fallible_cache.touch(key, LABEL_CLAIM_SECONDS)
        return True
    return False


def release_claim(*, example_id: int, user) -> None:
    key = _claim_key(example_id)
    if fallible_cache.get(key) == user.pk:
        fallible_cache.delete(key)


def next_example_to_label(
    *,
    project,
    user,
    split: str,
    from_pool: bool = False,
    exclude_ids=(),
    current_id: int | None = None,
    attempts: int = 8,
    candidates=None,
    least_sure: bool = False,
) -> Example | None:
    """The next example ``user`` should label, claimed for them; None when none is left.

    Candidates are the unlabeled examples of ``split`` (or of the pool, with ``from_pool``),
    minus ``exclude_ids`` (the ones the user skipped). ``current_id`` is kept when it is still a
    candidate (a reload shows the same example). Otherwise one is drawn at random (a random
    pivot id and the next candidate after it: two index lookups, fast on any pool size),
    passing over examples someone else has claimed. ``candidates`` replaces the default
    candidate set (overlap labeling hands out examples the user has not labeled yet).
    ``least_sure`` hands them out in the active-learning order instead
    (:func:`~apps.datasets.selectors.least_sure_first`): the first one nobody else holds.
    """
    if split not in GOLD_SPLITS:
        raise ValidationError(f"Gold labels go to dev or test, not {split!r}.")
    if candidates is None:
        candidates = label_candidates(project=project, split=split, from_pool=from_pool)
    excluded = set(exclude_ids)
    if excluded:
        candidates = candidates.exclude(id__in=excluded)
    if least_sure:
        candidates = least_sure_first(candidates)
    if current_id is not None:
        current = candidates.filter(pk=current_id).first()
        if current is not None and claim_example(example_id=current.pk, user=user):
            return current
    if least_sure:
        queue = list(candidates[:attempts])
        for example in queue:
            if claim_example(example_id=example.pk, user=user):
                return example
        return queue[0] if queue else None  # all held by others: better to double up
    # Candidates have no gold label, so ordering by (gold_label, id) is ordering by id; said
    # this way it matches the (project, gold_label, id) index, and PostgreSQL walks this
    # project's unlabeled rows. Ordered by id alone (or MIN/MAX) it may walk the primary key
    # instead, through every row of the projects created later: 40 ms a request beside a
    # 1M-row import into another project, whose rows the statistics do not know yet.
    ids = candidates.values("id")
    bounds = (  # both ends in one round trip
        Project.objects.filter(pk=project.pk)
        .values(
            lo=Subquery(ids.order_by("gold_label", "id")[:1]),
            hi=Subquery(ids.order_by("-gold_label", "-id")[:1]),
        )
        .first()
    )
    if bounds is None or bounds["lo"] is None:
        return None
    lo, hi = bounds["lo"], bounds["hi"]
    fallback = None
    passed_over: set[int] = set()
    for _ in range(attempts):
        pivot = random.randint(lo, hi)
        pool = candidates.exclude(id__in=passed_over) if passed_over else candidates
        example = pool.filter(id__gte=pivot).order_by("gold_label", "id").first() or (
            pool.filter(id__lt=pivot).order_by("-gold_label", "-id").first()
        )
        if example is None:
            break
        if claim_example(example_id=example.pk, user=user):
            return example
        fallback = fallback or example
        passed_over.add(example.pk)
    # Everything left is claimed by others: better to double up than to stop work.
    return fallback
