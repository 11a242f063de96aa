"""Bulk actions on the examples a search + filter selects: set a gold label, or move to a split.

- Project admins only. The selection is the examples page's filter (one definition,
  ``apps.datasets.example_filters``), evaluated again when the action runs; the count the admin
  confirmed must still be the count then, else nothing changes and they are told.
- Up to ``settings.FRUGAL_BULK_LIMIT`` examples (default 50,000) an action runs in the request,
  in one transaction, written in chunks. A bigger selection (up to
  ``settings.FRUGAL_BULK_JOB_LIMIT``, default 5,000,000) runs as a job on the interactive queue
  (``bulk_apply``; undoing one, ``bulk_undo``): the same checks when it runs (the launcher must
  still be an admin, the project not archived, the selection still the confirmed count), one
  transaction (all or nothing: a failure or a cancel changes nothing), progress on the job page.
- "Set gold label" skips examples that already have a gold label unless ``replace_gold``.
- Undo: every changed example's previous values are stored (:class:`BulkItem`); undo restores
  those that still carry what the action wrote, and leaves alone any changed since.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.bulk.models import BulkAction, BulkItem
from apps.datasets.example_filters import FILTER_FIELDS, ExampleFilterForm
from apps.datasets.models import Example, Split
from apps.datasets.selectors import examples_for_project
from apps.datasets.services import label_name, validate_label

__all__ = [
    "apply_bulk",
    "label_name",
    "plan_bulk",
    "request_undo",
    "run_bulk_job",
    "undo_bulk",
]
from apps.projects.models import Role
from apps.projects.selectors import role_in_project

CHUNK = 2_000


APPLY_JOB_KIND = "bulk_apply"
UNDO_JOB_KIND = "bulk_undo"


def bulk_limit() -> int:
    """The most examples an action changes within the request; more run as a job."""
    return int(getattr(settings, "FRUGAL_BULK_LIMIT", 50_000))


def bulk_job_limit() -> int:
    """The most examples one bulk action changes at all (as a job)."""
    return max(bulk_limit(), int(getattr(settings, "FRUGAL_BULK_JOB_LIMIT", 5_000_000)))


@dataclass(frozen=True)
class BulkPlan:
    kind: str
    value: str
    replace_gold: bool
    filters: dict
    queryset: QuerySet
    count: int
    too_many: bool

    @property
    def as_job(self) -> bool:
        """True when the action is too big for the request and runs as a job."""
        return self.count > bulk_limit()

    def describe(self, project) -> str:
        if self.kind == "label":
            return f"set the gold label {label_name(project, int(self.value))}"
        return f"move to {self.value}"


def _require_admin(*, project, user) -> None:
    if user is None or role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can change examples in bulk.")
    if project.archived_at is not None:
        raise PermissionDenied("The project is archived and read-only.")


def clean_filters(*, project, data) -> dict:
    """The filter part of ``data`` (a QueryDict or dict), validated; ValidationError if bad."""
    form = ExampleFilterForm({k: data.get(k, "") for k in FILTER_FIELDS}, project=project)
    if not form.is_valid():
        raise ValidationError(
            " ".join(str(e) for errors in form.errors.values() for e in errors) or "Bad filter."
        )
    return {key: data.get(key, "") for key in FILTER_FIELDS if data.get(key, "")}


def plan_bulk(*, project, filters: dict, kind: str, value, replace_gold: bool = False):
    """What a bulk action would change: the examples and how many (up to the limit + 1)."""
    form = ExampleFilterForm(filters, project=project)
    if not form.is_valid():
        raise ValidationError("The filter is not valid any more; go back to the examples page.")
    queryset = examples_for_project(project=project, **form.selector_kwargs())
    if kind == "label":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        validate_label(project=project, label=value)
        if not replace_gold:
            queryset = queryset.filter(gold_label__isnull=True)
        queryset = queryset.exclude(gold_label=value)
    elif kind == "split":
        if value not in Split.values:
            raise ValidationError(f"Unknown split {value!r}: use pool, dev or test.")
        queryset = queryset.exclude(split=value)
    else:
        raise ValidationError("Choose an action: set a gold label or move to a split.")
    limit = bulk_job_limit()
    n = queryset.order_by().values("id")[: limit + 1].count()
    return BulkPlan(
        kind=kind,
        value=str(value),
        replace_gold=bool(replace_gold),
        filters=dict(filters),
        queryset=queryset,
        count=min(n, limit),
        too_many=n > limit,
    )


def apply_bulk(
    *, project, user, filters: dict, kind: str, value, replace_gold: bool = False, expected: int
):
    """Run the bulk action the admin confirmed for ``expected`` examples: here (returns the
    BulkAction) or, above :func:`bulk_limit`, as a job (returns the queued Job)."""
    _require_admin(project=project, user=user)
    plan = _checked_plan(
        project=project,
        filters=filters,
        kind=kind,
        value=value,
        replace_gold=replace_gold,
        expected=expected,
    )
    if not plan.as_job:
        with transaction.atomic():
            return _write(project=project, user=user, plan=plan)
    from apps.jobs.services import launch_job

    return launch_job(
        kind=APPLY_JOB_KIND,
        project=project,
        user=user,
        params={
            "filters": plan.filters,
            "kind": plan.kind,
            "value": plan.value,
            "replace_gold": plan.replace_gold,
            "expected": plan.count,
        },
    )


def _checked_plan(*, project, filters, kind, value, replace_gold, expected) -> BulkPlan:
    plan = plan_bulk(
        project=project, filters=filters, kind=kind, value=value, replace_gold=replace_gold
    )
    if plan.too_many:
        raise ValidationError(
            f"More than {bulk_job_limit():,} examples match: narrow the search or filter "
            "(one bulk action changes at most that many)."
        )
    if plan.count != expected:
        raise ValidationError(
            f"The selection changed since you confirmed: it is now {plan.count:,} examples, "
            f"not {expected:,}. Nothing was changed; check and confirm again."
        )
    return plan


def run_bulk_job(*, project, user, params: dict, job=None, progress=None, before_commit=None):
    """The ``bulk_apply`` job's work: the same checks as in the request, when it runs, then
    every change in one transaction (a failure or a cancel — ``progress`` raising — changes
    nothing). ``before_commit`` is called last inside the transaction (the job's commit point).
    Returns the BulkAction."""
    _require_admin(project=project, user=user)
    plan = _checked_plan(
        project=project,
        filters=params.get("filters") or {},
        kind=params.get("kind", ""),
        value=params.get("value", ""),
        replace_gold=bool(params.get("replace_gold")),
        expected=int(params.get("expected", -1)),
    )
    with transaction.atomic():
        action = _write(project=project, user=user, plan=plan, job=job, progress=progress)
        if before_commit is not None:
            before_commit()
    return action


def _write(*, project, user, plan: BulkPlan, job=None, progress=None) -> BulkAction:
    """Record the previous values and apply the change, in chunks; call inside a transaction."""
    now = timezone.now()
    rows = list(
        plan.queryset.order_by("id").values_list(
            "id", "gold_label", "split", "gold_labeled_by_id", "gold_labeled_at"
        )
    )
    action = BulkAction.objects.create(
        project=project,
        user=user,
        job=job,
        kind=plan.kind,
        value=plan.value,
        filters={**plan.filters, **({"replace_gold": "1"} if plan.replace_gold else {})},
        count=len(rows),
    )
    for start in range(0, len(rows), CHUNK):
        if progress is not None:
            progress(start / max(len(rows), 1), f"Changed {start:,} of {len(rows):,} examples")
        chunk = rows[start : start + CHUNK]
        BulkItem.objects.bulk_create(
            BulkItem(
                action=action,
                example_id=row[0],
                previous_gold_label=row[1],
                previous_split=row[2],
                previous_by_id=row[3],
                previous_at=row[4],
            )
            for row in chunk
        )
        ids = [row[0] for row in chunk]
        if plan.kind == "label":
            Example.objects.filter(id__in=ids).update(
                gold_label=int(plan.value), gold_labeled_by=user, gold_labeled_at=now
            )
        else:
            Example.objects.filter(id__in=ids).update(split=plan.value)
    if progress is not None:
        progress(1.0, f"Changed {len(rows):,} examples; committing")
    return action


def request_undo(*, action: BulkAction, user):
    """Undo ``action``: here (returns how many examples were restored) or, for an action of
    more than :func:`bulk_limit` examples, as a ``bulk_undo`` job (returns the Job)."""
    _require_admin(project=action.project, user=user)
    if action.undone_at is not None:
        raise ValidationError("This bulk action was undone already.")
    if action.count <= bulk_limit():
        return undo_bulk(action=action, user=user)
    from apps.jobs.services import launch_job

    return launch_job(
        kind=UNDO_JOB_KIND, project=action.project, user=user, params={"action": action.pk}
    )


def undo_bulk(*, action: BulkAction, user, progress=None, before_commit=None) -> int:
    """Restore the previous values of the action's examples that still carry what it wrote;
    the number restored. An action is undone once, all or nothing (``progress`` raising rolls
    it back; ``before_commit`` is called last inside the transaction)."""
    _require_admin(project=action.project, user=user)
    with transaction.atomic():
        action = BulkAction.objects.select_for_update().get(pk=action.pk)
        if action.undone_at is not None:
            raise ValidationError("This bulk action was undone already.")
        restored = 0
        items = BulkItem.objects.filter(action=action).order_by("id")
        last = 0
        while True:
            if progress is not None:
                progress(
                    restored / max(action.count, 1),
                    f"Restored {restored:,} of up to {action.count:,} examples",
                )
            chunk = list(items.filter(id__gt=last)[:CHUNK])
            if not chunk:
                break
            last = chunk[-1].id
            current = Example.objects.select_for_update(of=("self",)).in_bulk(
                [item.example_id for item in chunk]
            )
            changed = []
            for item in chunk:
                example = current.get(item.example_id)
                if example is None:
                    continue
                if action.kind == "label":
                    if (
                        example.gold_label != int(action.value)
                        or example.gold_labeled_by_id != action.user_id
                    ):
                        continue
                    example.gold_label = item.previous_gold_label
                    example.gold_labeled_by_id = item.previous_by_id
                    example.gold_labeled_at = item.previous_at
                else:
                    if example.split != action.value:
                        continue
                    example.split = item.previous_split
                changed.append(example)
            fields = (
                ["gold_label", "gold_labeled_by", "gold_labeled_at"]
                if action.kind == "label"
                else ["split"]
            )
            # A previous author whose account was deleted since: the label stays, unattributed.
            if action.kind == "label":
                from django.contrib.auth import get_user_model

                known = set(
                    get_user_model()
                    .objects.filter(id__in={e.gold_labeled_by_id for e in changed} - {None})
                    .values_list("id", flat=True)
                )
                for example in changed:
                    if example.gold_labeled_by_id not in known:
                        example.gold_labeled_by_id = None
            Example.objects.bulk_update(changed, fields, batch_size=500)
            restored += len(changed)
        action.undone_at = timezone.now()
        action.undone_count = restored
        action.save(update_fields=["undone_at", "undone_count"])
        if before_commit is not None:
            before_commit()
    return restored
