"""Bulk actions on the examples a search + filter selects: set a gold label, or move to a split.

- Project admins only. The selection is the examples page's filter (one definition,
  ``apps.datasets.example_filters``), evaluated again when the action runs; the count the admin
  confirmed must still be the count then, else nothing changes and they are told.
- Bounded: at most ``settings.FRUGAL_BULK_LIMIT`` examples per action (default 50,000), in one
  transaction, written in chunks. A bigger selection is refused with a message — narrow it.
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

__all__ = ["apply_bulk", "label_name", "plan_bulk", "undo_bulk"]
from apps.projects.models import Role
from apps.projects.selectors import role_in_project

CHUNK = 2_000


def bulk_limit() -> int:
    return int(getattr(settings, "FRUGAL_BULK_LIMIT", 50_000))


@dataclass(frozen=True)
class BulkPlan:
    kind: str
    value: str
    replace_gold: bool
    filters: dict
    queryset: QuerySet
    count: int
    too_many: bool

    def describe(self, project) -> str:
        if self.kind == "label":
            return f"set the gold label {label_name(project, int(self.value))}"
        return f"move to {self.value}"


def _require_admin(*, project, user) -> None:
    if role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can change examples in bulk.")


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
    limit = bulk_limit()
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
) -> BulkAction:
    """Run the bulk action the admin confirmed for ``expected`` examples."""
    _require_admin(project=project, user=user)
    plan = plan_bulk(
        project=project, filters=filters, kind=kind, value=value, replace_gold=replace_gold
    )
    if plan.too_many:
        raise ValidationError(
            f"More than {bulk_limit():,} examples match: narrow the search or filter "
            "(bulk actions change at most that many at once)."
        )
    if plan.count != expected:
        raise ValidationError(
            f"The selection changed since you confirmed: it is now {plan.count:,} examples, "
            f"not {expected:,}. Nothing was changed; check and confirm again."
        )
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            plan.queryset.order_by("id").values_list(
                "id", "gold_label", "split", "gold_labeled_by_id", "gold_labeled_at"
            )
        )
        action = BulkAction.objects.create(
            project=project,
            user=user,
            kind=kind,
            value=plan.value,
            filters={**plan.filters, **({"replace_gold": "1"} if replace_gold else {})},
            count=len(rows),
        )
        for start in range(0, len(rows), CHUNK):
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
            if kind == "label":
                Example.objects.filter(id__in=ids).update(
                    gold_label=int(plan.value), gold_labeled_by=user, gold_labeled_at=now
                )
            else:
                Example.objects.filter(id__in=ids).update(split=plan.value)
    return action


def undo_bulk(*, action: BulkAction, user) -> int:
    """Restore the previous values of the action's examples that still carry what it wrote;
    the number restored. An action is undone once."""
    _require_admin(project=action.project, user=user)
    with transaction.atomic():
        action = BulkAction.objects.select_for_update().get(pk=action.pk)
        if action.undone_at is not None:
            raise ValidationError("This bulk action was undone already.")
        restored = 0
        items = BulkItem.objects.filter(action=action).order_by("id")
        last = 0
        while True:
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
    return restored
