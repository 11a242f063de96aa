"""The live preview: what one rule matches in the whole project, while it is being written.

Counts per split, dev precision against gold labels, and a few highlighted pool matches; the
texts come from the per-process cache in :mod:`apps.rules.corpus`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils.safestring import SafeString

from apps.datasets.models import Example
from apps.projects.models import Project
from apps.rules.corpus import answer_index, project_texts
from apps.rules.describe import describe
from apps.rules.highlight import highlight_rule
from apps.rules.precision import dev_precision, dev_precision_text
from apps.rules.services.common import (
    MAX_MANUAL_PATTERN_LENGTH,
    RuleInputError,
    check_words_size,
)
from models.prboost.rules import PromptRule, RegexRule, RuleError, rule_from_dict

PREVIEW_SAMPLES = 8
PREVIEW_TEXT_CHARS = 320
# A dense regex (most texts match) is counted on this many texts while typing (see preview_rule).
PREVIEW_DENSE_BUDGET = 10_000
# Every preview (edits and saves too) stops matching a regex after this long or this many bytes
# of text scanned (settings FRUGAL_PREVIEW_MAX_SECONDS, FRUGAL_PREVIEW_MAX_BYTES).
DEFAULT_MAX_SECONDS = 0.5
DEFAULT_MAX_BYTES = 256 << 20


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
    # Set when the time or bytes cap cut matching short: the examples looked at (in id order);
    # the counts are of those.
    stopped_after: int | None = None

    @property
    def coverage(self) -> float:
        return self.pool_matches / self.pool_total if self.pool_total else 0.0

    @property
    def dev_precision(self) -> float | None:
        """The smoothed dev precision (apps.rules.precision, the one shown everywhere)."""
        return dev_precision(correct=self.dev_correct, matched=self.dev_labeled)

    @property
    def dev_precision_raw(self) -> float | None:
        """Unsmoothed share of the matched gold dev examples that carry the rule's label."""
        return self.dev_correct / self.dev_labeled if self.dev_labeled else None

    @property
    def stopped_text(self) -> str:
        """ "stopped after N examples" when a cap cut the preview short, else ""."""
        if self.stopped_after is None:
            return ""
        return (
            f"stopped after {self.stopped_after:,} examples: this pattern takes too long to "
            "match on all of them, so the counts are of those"
        )

    @property
    def coverage_text(self) -> str:
        return f"{100 * self.coverage:.1f}%"

    @property
    def dev_precision_text(self) -> str:
        return dev_precision_text(correct=self.dev_correct, matched=self.dev_labeled)

    def stats(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage,
            "pool_matches": self.pool_matches,
            "dev_matches": self.dev_matches,
            "dev_labeled": self.dev_labeled,
            "dev_correct": self.dev_correct,
            "dev_precision": self.dev_precision,
            "dev_precision_raw": self.dev_precision_raw,
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

    A regex that matches most texts (or whose matches run over text edges, or that takes long)
    costs one RE2 pass per text; unless ``exact``, such a pattern is counted on an even sample
    of ``PREVIEW_DENSE_BUDGET`` texts plus every dev text, and the pool/test counts are scaled up
    (``Preview.estimated``; dev counts stay exact). Exact or not, matching stops after
    ``FRUGAL_PREVIEW_MAX_SECONDS`` or ``FRUGAL_PREVIEW_MAX_BYTES`` scanned
    (``Preview.stopped_after``: the counts are of the examples looked at). Never raises for a
    bad rule: ``Preview.error`` carries the message instead.
    """
    started = time.perf_counter()
    try:
        for name in ("words", "answer_words"):
            check_words_size(definition.get(name) if isinstance(definition, Mapping) else None)
    except RuleInputError as exc:
        return Preview(error=exc.message)
    try:
        rule = rule_from_dict(definition)
    except RuleError as exc:
        return Preview(error=str(exc))
    if isinstance(rule, RegexRule) and len(rule.pattern) > MAX_MANUAL_PATTERN_LENGTH:
        return Preview(error=f"the pattern is longer than {MAX_MANUAL_PATTERN_LENGTH} characters")
    texts = project_texts(project=project)
    if isinstance(rule, PromptRule) and texts.corpus.answer_index is None:
        # The language-model cache may have been warmed since the texts were loaded.
        texts.corpus.answer_index = answer_index(project, texts.ids)
    preview = Preview(description=describe(rule, project))
    preview.pool_total = int((texts.splits == 0).sum())
    try:
        result = texts.matcher.match_bounded(
            rule,
            budget=None if exact else PREVIEW_DENSE_BUDGET,
            always=texts.splits == 1,
            max_seconds=float(getattr(settings, "FRUGAL_PREVIEW_MAX_SECONDS", DEFAULT_MAX_SECONDS)),
            max_bytes=int(getattr(settings, "FRUGAL_PREVIEW_MAX_BYTES", DEFAULT_MAX_BYTES)),
        )
    except RuleError as exc:
        preview.error = str(exc)
        if isinstance(rule, PromptRule):
            preview.error = (
                "live counts for prompt rules need the project's language-model cache; the "
                "numbers shown are from when the rule was proposed"
            )
        return preview
    matched, looked = result.matched, result.looked
    if result.stopped_after is not None:
        preview.stopped_after = result.stopped_after
        preview.pool_total = int((texts.splits[: result.stopped_after] == 0).sum())
        looked = None  # counts of the examples looked at, not scaled up
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
        preview.dev_labeled, preview.dev_correct = _gold_agreement(
            project=project, ids=dev_ids, label=rule.label
        )
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


def _gold_agreement(*, project: Project, ids: np.ndarray, label: int) -> tuple[int, int]:
    """(examples among ``ids`` with a gold label, those whose gold label is ``label``): one
    row back from the database, the ids as one array parameter on PostgreSQL (thousands of
    matched dev examples cost one query, not thousands of rows)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE gold_label = %s) FROM datasets_example "
                "WHERE project_id = %s AND id = ANY(%s) AND gold_label IS NOT NULL",
                [label, project.pk, ids.tolist()],
            )
            labeled, correct = cursor.fetchone()
        return int(labeled), int(correct)
    golds = Example.objects.filter(
        project=project, pk__in=ids.tolist(), gold_label__isnull=False
    ).values_list("gold_label", flat=True)
    values = list(golds)
    return len(values), sum(1 for g in values if g == label)


def _spread(positions: np.ndarray, k: int) -> list[int]:
    """Up to k positions spread evenly over the matches (not just the first few examples)."""
    if positions.size <= k:
        return [int(i) for i in positions]
    picks = np.linspace(0, positions.size - 1, k).round().astype(np.int64)
    return [int(positions[i]) for i in np.unique(picks)]
