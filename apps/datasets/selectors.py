"""Reads of examples: filtered querysets, keyset pages and bounded counts.

Everything here stays fast on projects of a million examples: pages are keyset pages on ``id``
(``WHERE id > last ORDER BY id LIMIT n``, never ``OFFSET``), and counts are bounded
(``COUNT`` over at most ``cap + 1`` rows), so a page never scans the whole project.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import OperationalError, connection, transaction
from django.db.models import Count, Func, Q, QuerySet

from apps.datasets.models import Example, Split
from apps.frugal import cache as fallible_cache

# Unlabeled, in a gold_label/label filter.
NONE = "none"
# Counts above this are shown as "more than N".
COUNT_CAP = 1_000
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
ESTIMATE_CACHE_SECONDS = 60


def uses_postgres() -> bool:
    return connection.vendor == "postgresql"


class EnglishTsvector(Func):
    """``to_tsvector('english'::regconfig, text)``: how ``Example.search_vector`` is computed.

    Written out (instead of ``SearchVector``, which wraps the column in ``COALESCE``) so that
    it is the very expression the indexing job stores (``search_index``).
    """

    template = "to_tsvector('english'::regconfig, %(expressions)s)"
    arity = 1

    def __init__(self, expression, **extra):
        from django.contrib.postgres.search import SearchVectorField

        super().__init__(expression, output_field=SearchVectorField(), **extra)


def _search_filter(
    queryset: QuerySet[Example], search: str, *, include_unindexed: bool = True
) -> QuerySet[Example]:
    """Rows matching ``search``. On PostgreSQL ``include_unindexed`` (the default) also tests
    the rows whose stored vector the indexing job has not filled yet; leave it out only when
    the project has none (see :func:`has_unindexed_examples`)."""
    if uses_postgres():
        from django.contrib.postgres.search import SearchQuery

        query = SearchQuery(search, config="english", search_type="websearch")
        # The ``fts`` alias marks a text search (see uses_text_search).
        queryset = queryset.alias(fts=EnglishTsvector("text"))
        if not include_unindexed:
            # Every row is indexed: the GIN index alone, which the planner can AND with a
            # filter's index (it never ANDs two bitmaps that share a condition, and the OR
            # below shares the project and id window with every filter's index).
            return queryset.filter(search_vector=query)
        # Indexed rows through the GIN index on the stored vector; rows the indexing job has
        # not reached yet (found through the partial index of NULL vectors) by computing the
        # vector on the fly. The planner ORs the two indexes' bitmaps; the results are the
        # same as computing every vector. ``IS NULL`` must come first: PostgreSQL evaluates
        # the terms inside an OR in the written order, and ``to_tsvector`` (~12 µs) would
        # otherwise run for every indexed row a window passes over.
        unindexed = Q(search_vector__isnull=True) & Q(fts=query)
        return queryset.filter(Q(search_vector=query) | unindexed)
    # Elsewhere: every term (quotes kept as phrases, "-word" excluded) as a case-insensitive
    # substring, which is what websearch syntax means without stemming.
    for negate, term in search_terms(search, keep_negated=True):
        if negate:
            queryset = queryset.exclude(text__icontains=term)
        else:
            queryset = queryset.filter(text__icontains=term)
    return queryset


def has_unindexed_examples(*, project) -> bool:
    """Whether some of the project's examples have no stored search vector yet (PostgreSQL;
    one probe of the partial index of unindexed rows)."""
    if not uses_postgres():
        return False
    return Example.objects.filter(project=project, search_vector__isnull=True).exists()


_TERM_RE = re.compile(r'(-?)"([^"]+)"|(-?)(\S+)')
_OPERATORS = {"or", "and"}


def search_terms(search: str, *, keep_negated: bool = False) -> list:
    """The terms of a websearch-style query: words and "quoted phrases"; ``-word`` negates.

    Returns plain strings, or ``(negated, term)`` pairs with ``keep_negated``.
    """
    out = []
    for match in _TERM_RE.finditer(search or ""):
        if match.group(2) is not None:
            negate, term = bool(match.group(1)), match.group(2).strip()
        else:
            negate, term = bool(match.group(3)), match.group(4).strip("\"'()")
            if term.lower() in _OPERATORS:
                continue
        if not term:
            continue
        if keep_negated:
            out.append((negate, term))
        elif not negate:
            out.append(term)
    return out


def _label_filter(queryset: QuerySet[Example], field_name: str, value) -> QuerySet[Example]:
    if value is None or value == "":
        return queryset
    if value == NONE:
        return queryset.filter(**{f"{field_name}__isnull": True})
    return queryset.filter(**{field_name: int(value)})


def examples_for_project(
    *,
    project,
    search: str | None = None,
    split: str | None = None,
    gold_label: int | str | None = None,
    label: int | str | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    label_source: str | None = None,
    student_label: int | str | None = None,
    min_student_confidence: float | None = None,
    max_student_confidence: float | None = None,
) -> QuerySet[Example]:
    """The project's examples matching every given filter, ordered by id.

    ``search`` is PostgreSQL full-text search (``websearch_to_tsquery`` over the stored English
    ``tsvector`` and its GIN index, see :func:`_search_filter`) on PostgreSQL and
    case-insensitive substring matching elsewhere.
    ``gold_label``/``label`` take a label index or ``"none"`` (unlabeled).
    """
    # The stored vector is for the database's search only: never worth sending to a page.
    queryset = Example.objects.filter(project=project).defer("search_vector")
    if split:
        queryset = queryset.filter(split=split)
    queryset = _label_filter(queryset, "gold_label", gold_label)
    queryset = _label_filter(queryset, "label", label)
    if min_confidence is not None:
        queryset = queryset.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        queryset = queryset.filter(confidence__lte=max_confidence)
    if label_source is not None and label_source != "":
        queryset = queryset.filter(label_source="" if label_source == NONE else label_source)
    # The serving distilled student's predictions (apps.distill.models.Prediction).
    queryset = _label_filter(queryset, "student_prediction__label", student_label)
    if min_student_confidence is not None:
        queryset = queryset.filter(student_prediction__confidence__gte=min_student_confidence)
    if max_student_confidence is not None:
        queryset = queryset.filter(student_prediction__confidence__lte=max_student_confidence)
    if search and search.strip():
        queryset = _search_filter(
            queryset, search.strip(), include_unindexed=has_unindexed_examples(project=project)
        )
    return queryset.order_by("id")


@dataclass
class KeysetPage:
    """One page of a keyset-paginated listing, with the ids to ask for the pages around it."""

    items: list = field(default_factory=list)
    next_after: int | None = None  # ?after= for the next page, None on the last page
    prev_before: int | None = None  # ?before= for the previous page, None on the first page

    @property
    def has_next(self) -> bool:
        return self.next_after is not None

    @property
    def has_previous(self) -> bool:
        return self.prev_before is not None


def keyset_page(
    queryset: QuerySet,
    *,
    after: int | None = None,
    before: int | None = None,
    size: int = PAGE_SIZE,
    id_bounds: tuple[int, int] | None = None,
) -> KeysetPage:
    """The page of ``size`` rows after id ``after`` (or before id ``before``), in id order.

    One indexed range query of ``size + 1`` rows per page: fast at any depth, and a row
    inserted or deleted meanwhile never makes a page repeat or skip another's rows.
    Full-text searches on PostgreSQL are fetched in id windows instead (see
    :func:`_windowed_rows`); ``id_bounds`` (the project's lowest and highest id) sizes them.
    """
    size = max(1, min(int(size), MAX_PAGE_SIZE))
    backwards = before is not None
    position = before if backwards else after
    if uses_text_search(queryset) and id_bounds is not None and id_bounds[0] is not None:
        rows = windowed_rows(
            queryset, position=position, backwards=backwards, limit=size + 1, id_bounds=id_bounds
        )
    elif backwards:
        rows = list(queryset.filter(id__lt=before).order_by("-id")[: size + 1])
    else:
        if after is not None:
            queryset = queryset.filter(id__gt=after)
        rows = list(queryset.order_by("id")[: size + 1])
    has_more = len(rows) > size
    if backwards:
        items = list(reversed(rows[:size]))
        return KeysetPage(
            items=items,
            next_after=items[-1].id if items else None,
            prev_before=items[0].id if items and has_more else None,
        )
    items = rows[:size]
    return KeysetPage(
        items=items,
        next_after=items[-1].id if has_more else None,
        # Coming from an earlier page (after=...) there is one before this page.
        prev_before=items[0].id if after is not None and items else None,
    )


def uses_text_search(queryset: QuerySet) -> bool:
    """Whether the queryset filters by PostgreSQL full-text search (the ``fts`` alias)."""
    return uses_postgres() and "fts" in queryset.query.annotations


def id_bounds(*, project) -> tuple[int | None, int | None]:
    """The project's lowest and highest example id (two index lookups, one round trip)."""
    table = Example._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT id FROM {table} WHERE project_id = %s ORDER BY id LIMIT 1), "  # noqa: S608
            f"(SELECT id FROM {table} WHERE project_id = %s ORDER BY id DESC LIMIT 1)",
            [project.pk, project.pk],
        )
        low, high = cursor.fetchone()
    return low, high


def estimated_rows(queryset: QuerySet) -> int:
    """PostgreSQL's planner estimate of the number of rows (planning only, no scan).

    Remembered on the queryset object (the page and its count plan it once) and, as an
    estimate drifts slowly, in Django's cache for ``ESTIMATE_CACHE_SECONDS``.
    """
    cached = getattr(queryset, "_frugal_estimated_rows", None)
    if cached is not None:
        return cached
    sql, params = queryset.order_by().query.sql_with_params()
    key = "frugal:rows-estimate:" + hashlib.sha256(f"{sql}|{params!r}".encode()).hexdigest()
    cached = fallible_cache.get(key)  # speed only: without the cache the planner is asked
    if cached is None:
        plan = json.loads(queryset.order_by().explain(format="json"))
        cached = int(plan[0]["Plan"]["Plan Rows"])
        fallible_cache.set(key, cached, ESTIMATE_CACHE_SECONDS)
    queryset._frugal_estimated_rows = cached
    return cached


@contextmanager
def _planner_settings(**settings: str):
    """``SET LOCAL`` settings for the queries inside, in one transaction.

    In a request (autocommit) the settings end with the block's transaction; inside an outer
    transaction they are reset when the block ends without an error (an error rolls them back
    with the block's savepoint).
    """
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("; ".join(f"SET LOCAL {name} = {value}" for name, value in settings.items()))
        yield
        if nested:
            cursor.execute("; ".join(f"RESET {name}" for name in settings))


def windowed_rows(queryset, *, position, backwards: bool, limit: int, id_bounds) -> list:
    """The first ``limit`` rows past ``position``, for a full-text search, in id windows.

    Walking the primary key and testing each row would compute ``to_tsvector`` for every row
    passed over (~30 µs each); fetching every match and sorting reads every matching row.
    Instead each query ANDs the GIN index's bitmap with an id range just wide enough (by the
    planner's estimate of how dense the matches are) to hold a page, so only about a page of
    rows is read; the window grows fourfold until the page is full or the ids run out.
    """
    low, high = id_bounds
    span = max(1, high - low + 1)
    density = max(estimated_rows(queryset), 1) / span
    window = max(int(2 * limit / density), 4 * limit)
    rows: list = []
    cursor = position if position is not None else (high + 1 if backwards else low - 1)
    with _planner_settings(enable_indexscan="off", enable_seqscan="off"):
        while len(rows) < limit:
            if backwards:
                if cursor <= low:
                    break
                edge = max(cursor - window, low - 1)
                part = queryset.filter(id__lt=cursor, id__gt=edge).order_by("-id")
            else:
                if cursor >= high:
                    break
                edge = min(cursor + window, high)
                part = queryset.filter(id__gt=cursor, id__lte=edge).order_by("id")
            rows.extend(part[: limit - len(rows)])
            cursor = edge
            window *= 4
    return rows


@dataclass
class MatchCount:
    """How many examples match: exact up to ``cap``, else PostgreSQL's estimate."""

    n: int
    exact: bool
    estimated: bool = False

    @property
    def label(self) -> str:
        """The number with thousands separators, rounded when it is an estimate."""
        n = self.n
        if self.estimated and n >= 1000:
            n = round(n, -(len(str(n)) - 2))
        return f"{n:,}"


def count_matches(queryset: QuerySet, *, cap: int = COUNT_CAP) -> MatchCount:
    """The number of matching rows, never at the price of a large scan.

    On PostgreSQL the planner's estimate comes first (planning only); when it is above
    ``cap`` it is what is shown ("about N"), otherwise the rows are counted exactly, at most
    ``cap + 1`` of them. Elsewhere (SQLite) the bounded count is exact up to the cap.
    """
    if uses_postgres():
        estimate = estimated_rows(queryset)
        if estimate > cap:
            return MatchCount(n=estimate, exact=False, estimated=True)
    n, exact = bounded_count(queryset, cap=cap)
    return MatchCount(n=n, exact=exact)


# The exact count and a page's number are asked for after the page has been shown (htmx), each
# within this time budget, so a slow count never holds up a page.
EXACT_COUNT_TIMEOUT_MS = 3_000
# Jumping to page N reads N × page size index entries; deeper jumps are refused with a message.
MAX_PAGE_JUMP_ROWS = 2_000_000


def count_within(queryset: QuerySet, *, timeout_ms: int = EXACT_COUNT_TIMEOUT_MS) -> int | None:
    """Every matching row counted, or None when that takes longer than ``timeout_ms``.

    On PostgreSQL the count runs under ``statement_timeout``; SQLite (one local file, the
    embedded set-up) counts without a limit.
    """
    queryset = queryset.order_by()
    if not uses_postgres():
        return queryset.count()
    try:
        with _planner_settings(statement_timeout=str(int(timeout_ms))):
            return queryset.count()
    except OperationalError:  # cancelled by statement_timeout
        return None


def page_number(
    queryset: QuerySet, *, first_id: int, size: int = PAGE_SIZE, timeout_ms=EXACT_COUNT_TIMEOUT_MS
) -> int | None:
    """The 1-based number of the page whose first row has id ``first_id`` (None: too slow)."""
    before = count_within(queryset.filter(id__lt=first_id), timeout_ms=timeout_ms)
    return None if before is None else before // size + 1


def numbered_page(
    queryset: QuerySet, *, number: int, size: int = PAGE_SIZE, timeout_ms=EXACT_COUNT_TIMEOUT_MS
) -> KeysetPage | None:
    """Page ``number`` (1-based) by offset, for "go to page N"; None when it takes too long.

    The pages around it are keyset pages again (``next_after`` / ``prev_before``).
    """
    offset = (max(1, number) - 1) * size
    queryset = queryset.order_by("id")
    try:
        if uses_postgres():
            with _planner_settings(statement_timeout=str(int(timeout_ms))):
                rows = list(queryset[offset : offset + size + 1])
        else:
            rows = list(queryset[offset : offset + size + 1])
    except OperationalError:
        return None
    items = rows[:size]
    return KeysetPage(
        items=items,
        next_after=items[-1].id if len(rows) > size else None,
        prev_before=items[0].id if offset > 0 and items else None,
    )


def bounded_count(queryset: QuerySet, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """``(count, exact)``: the number of rows, counting at most ``cap + 1`` of them.

    ``exact`` is False when there are more than ``cap`` rows (the count is then ``cap``).
    """
    n = queryset.order_by().values("id")[: cap + 1].count()
    return (cap, False) if n > cap else (n, True)


# The search-index notice counts unindexed rows exactly up to this many.
UNINDEXED_COUNT_CAP = 10_000


def unindexed_for_search(*, project) -> MatchCount | None:
    """How many of the project's examples the search indexing job has not reached yet, or
    None when it has reached them all (always None off PostgreSQL, where search does not use
    the stored vectors). Bounded: a few index entries when all are indexed, at most
    ``UNINDEXED_COUNT_CAP + 1`` otherwise (through the partial index of unindexed rows)."""
    if not has_unindexed_examples(project=project):
        return None
    queryset = Example.objects.filter(project=project, search_vector__isnull=True)
    n, exact = bounded_count(queryset, cap=UNINDEXED_COUNT_CAP)
    return MatchCount(n=n, exact=exact)


def example_for_project(*, project, example_id: int) -> Example | None:
    return (
        Example.objects.filter(project=project, pk=example_id)
        .select_related("gold_labeled_by")
        .first()
    )


def gold_progress(*, project, split: str) -> dict:
    """How many of the split's examples have a gold label: ``{"labeled", "total"}``.

    One pass over the split's rows (both counts in one query)."""
    counts = Example.objects.filter(project=project, split=split).aggregate(
        total=Count("id"), labeled=Count("gold_label")
    )
    total, labeled = counts["total"], counts["labeled"]
    return {"labeled": labeled, "total": total, "remaining": total - labeled}


def label_candidates(*, project, split: str, from_pool: bool) -> QuerySet[Example]:
    """Examples waiting for a gold label: unlabeled ones of ``split``, or of the pool."""
    source = Split.POOL if from_pool else split
    return Example.objects.filter(project=project, split=source, gold_label__isnull=True)


def least_sure_first(candidates: QuerySet[Example]) -> QuerySet[Example]:
    """The active-learning order: candidates with a current label, smallest margin between its
    two likeliest labels first (``Example.margin``; ties by id). Rows never scored are left out."""
    return candidates.filter(margin__isnull=False).order_by("margin", "id")


def unscored_pool_count(*, project) -> tuple[int, bool]:
    """How many unlabeled pool examples have no margin yet (never given a model or rule label)."""
    return bounded_count(
        label_candidates(project=project, split=Split.DEV, from_pool=True).filter(
            margin__isnull=True
        )
    )


# --- where the labels disagree ---------------------------------------------------------------

# Below this confidence the current label counts as unsure.
UNSURE_CONFIDENCE = 0.6


@dataclass(frozen=True)
class DisagreementCursor:
    """A position in the disagreements listing: its sort key ``(bucket, key, id)``."""

    bucket: int
    key: float
    id: int

    def encode(self) -> str:
        return f"{self.bucket}_{self.key!r}_{self.id}"

    @classmethod
    def decode(cls, raw: str) -> DisagreementCursor | None:
        """The cursor of a page link, or None when ``raw`` is not one."""
        parts = (raw or "").split("_")
        if len(parts) != 3 or parts[0] not in ("0", "1") or not parts[2].isdigit():
            return None
        try:
            key = float(parts[1])
        except ValueError:
            return None
        if key != key or key in (float("inf"), float("-inf")):
            return None
        return cls(bucket=int(parts[0]), key=key, id=int(parts[2]))


def disagreements_for_project(*, project) -> QuerySet[Example]:
    """The examples where gold labeling helps most, best first.

    Two kinds, annotated with ``bucket`` and ``sort_key``: first (bucket 0) dev/test examples
    without a gold label whose current label is unsure (confidence below ``UNSURE_CONFIDENCE``),
    least confident first; then (bucket 1) examples whose current label differs from the gold
    label, most confident first (a confident mistake says the most about the rules). Ties by id.
    """
    from django.db.models import Case, F, FloatField, IntegerField, Value, When
    from django.db.models.functions import Coalesce

    unsure = Q(
        split__in=[Split.DEV, Split.TEST],
        gold_label__isnull=True,
        label__isnull=False,
        confidence__lt=UNSURE_CONFIDENCE,
    )
    disagrees = Q(gold_label__isnull=False, label__isnull=False) & ~Q(label=F("gold_label"))
    return (
        Example.objects.filter(project=project)
        .filter(unsure | disagrees)
        .annotate(
            bucket=Case(When(unsure, then=Value(0)), default=Value(1), output_field=IntegerField()),
            sort_key=Case(
                When(unsure, then=F("confidence")),
                default=-Coalesce(F("confidence"), Value(0.0)),
                output_field=FloatField(),
            ),
        )
        .order_by("bucket", "sort_key", "id")
    )


def disagreement_page(
    queryset: QuerySet[Example],
    *,
    after: DisagreementCursor | None = None,
    before: DisagreementCursor | None = None,
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """A keyset page of :func:`disagreements_for_project` on ``(bucket, sort_key, id)``.

    Like :func:`keyset_page` (no ``OFFSET``, stable while rows change), but ``next_after`` and
    ``prev_before`` are :class:`DisagreementCursor` values (``encode()`` them into links).
    """
    size = max(1, min(int(size), MAX_PAGE_SIZE))

    def past(cursor: DisagreementCursor, op: str) -> Q:
        return (
            Q(**{f"bucket__{op}": cursor.bucket})
            | Q(bucket=cursor.bucket, **{f"sort_key__{op}": cursor.key})
            | Q(bucket=cursor.bucket, sort_key=cursor.key, **{f"id__{op}": cursor.id})
        )

    def cursor_of(example) -> DisagreementCursor:
        return DisagreementCursor(bucket=example.bucket, key=float(example.sort_key), id=example.id)

    if before is not None:
        rows = list(
            queryset.filter(past(before, "lt")).order_by("-bucket", "-sort_key", "-id")[: size + 1]
        )
        items = list(reversed(rows[:size]))
        return KeysetPage(
            items=items,
            next_after=cursor_of(items[-1]) if items else None,
            prev_before=cursor_of(items[0]) if items and len(rows) > size else None,
        )
    if after is not None:
        queryset = queryset.filter(past(after, "gt"))
    rows = list(queryset[: size + 1])
    items = rows[:size]
    return KeysetPage(
        items=items,
        next_after=cursor_of(items[-1]) if len(rows) > size else None,
        prev_before=cursor_of(items[0]) if after is not None and items else None,
    )
