"""Reads of rules and decisions, always within one project."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max, Prefetch, QuerySet
from django.http import Http404

from apps.datasets.models import Example
from apps.projects.models import Project
from apps.rules.corpus import answer_index
from apps.rules.describe import describe, label_names
from apps.rules.models import Rule, RuleDecision, RuleStatus
from models.prboost.matching import Corpus, match_rule
from models.prboost.rules import RuleError, rule_from_dict


def rules_for_project(
    *,
    project: Project,
    status: str | None = None,
    origin: str | None = None,
    kind: str | None = None,
    round: int | None = None,  # noqa: A002 - the API's query parameter name
    q: str | None = None,
) -> QuerySet[Rule]:
    """The project's rules, filtered; who created and decided them comes along."""
    rules = Rule.objects.filter(project=project).select_related("created_by", "decided_by")
    if status:
        rules = rules.filter(status=status)
    if origin:
        rules = rules.filter(origin=origin)
    if kind:
        rules = rules.filter(kind=kind)
    if round is not None:
        rules = rules.filter(round_number=round)
    if q:
        rules = rules.filter(description__icontains=q)
    return rules.select_related("claimed_by")


def get_rule(*, project: Project, rule_id: int, with_decisions: bool = False) -> Rule:
    """One rule of the project; 404 when it is another project's or does not exist."""
    rules = Rule.objects.filter(project=project, pk=rule_id).select_related(
        "project", "created_by", "decided_by", "claimed_by"
    )
    if with_decisions:
        rules = rules.prefetch_related(
            Prefetch(
                "decisions",
                queryset=RuleDecision.objects.select_related("user").order_by("-created_at", "-id"),
            )
        )
    rule = rules.first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


def status_counts(*, project: Project) -> dict[str, int]:
    return dict(
        Rule.objects.filter(project=project)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )


# --- what the review screens and the round job read ------------------------------------------


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


def held_by_others(*, project: Project, user, round_number: int | None) -> list[dict]:
    """Suggestions of the round leased right now to other reviewers, which ``user`` has not
    voted on: ``[{"name": username, "count": n}]``, most first (what the review screen says
    instead of "nothing left" while someone else holds the last ones)."""
    from django.utils import timezone

    from apps.rules.models import DecisionAction

    if round_number is None:
        return []
    voted = RuleDecision.objects.filter(
        rule__project=project,
        user=user,
        undone=False,
        action__in=(DecisionAction.ACCEPT, DecisionAction.REJECT),
    ).values("rule_id")
    rows = (
        Rule.objects.filter(
            project=project,
            status=RuleStatus.SUGGESTED,
            round_number=round_number,
            claimed_until__gte=timezone.now(),
            claimed_by__isnull=False,
        )
        .exclude(claimed_by=user)
        .exclude(pk__in=voted)
        .order_by()
        .values("claimed_by__username")
        .annotate(n=Count("id"))
        .order_by("-n", "claimed_by__username")
    )
    return [{"name": row["claimed_by__username"], "count": row["n"]} for row in rows]


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


def sample_examples(*, project: Project, ids: Sequence[int]) -> list[Example]:
    """The examples with these ids, in that order (only the project's)."""
    found = Example.objects.filter(project=project, pk__in=list(ids)).only(
        "id", "text", "split", "gold_label", "external_id"
    )
    by_id = {e.pk: e for e in found}
    return [by_id[i] for i in ids if i in by_id]


# --- the rules that fired on one example -------------------------------------------------------


@dataclass
class FiredRule:
    """An accepted rule as the example page shows it."""

    id: int
    kind: str
    description: str
    label: str
    fired: bool | None  # None: not evaluated on this page (needs the project's caches)
    reason: str = ""


def _example_entities(example) -> list | None:
    raw = example.entities
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    try:
        return [tuple((str(span["text"]), int(span["start"]), int(span["end"])) for span in raw)]
    except (KeyError, TypeError, ValueError):
        return None


def rules_for_example(*, project, example) -> list[FiredRule]:
    """The project's accepted rules, each with whether it matches ``example``.

    Keyword and regex rules are matched by the engine on a corpus of this one text (cheap, no
    project-wide cache); prompt rules through the language-model answer index when the project
    has one warm (:func:`apps.rules.corpus.answer_index`); similarity rules need the
    project's embeddings and are listed as not evaluated here, as are rules the engine cannot
    run on this example (e.g. a "between the entities" rule on a text without two entities).
    """
    rows = accepted_rule_rows(project=project)
    if not rows:
        return []
    entities = _example_entities(example)
    corpus = Corpus(texts=[example.text], entities=entities)
    prompt_corpus = None
    names = label_names(project)
    out = []
    for row in rows:
        label = names[row.label] if 0 <= row.label < len(names) else str(row.label)
        item = FiredRule(
            id=row.pk, kind=row.kind, description=row.description, label=label, fired=None
        )
        out.append(item)
        try:
            rule = rule_from_dict(row.definition)
        except RuleError as exc:
            item.reason = f"the stored rule is not valid: {exc}"
            continue
        if not item.description:
            item.description = describe(rule, project)
        target = corpus
        if row.kind == "similarity":
            item.reason = "similarity rules need the project's embeddings"
            continue
        if row.kind == "prompt":
            if prompt_corpus is None:
                index = answer_index(project, np.asarray([example.pk], dtype=np.int64))
                prompt_corpus = Corpus(texts=[example.text], answer_index=index)
            if prompt_corpus.answer_index is None:
                item.reason = "prompt rules need the project's language-model cache (not warm)"
                continue
            target = prompt_corpus
        try:
            item.fired = bool(match_rule(rule, target).size)
        except RuleError as exc:
            item.reason = str(exc)
    return out


@dataclass
class SeedRule:
    """One imported rule vote column (e.g. a WRENCH labeling function) with its statistics."""

    number: int  # 1-based column
    labels: list[str]  # the labels it votes for
    pool_matches: int
    pool_total: int
    dev_matched: int  # gold dev examples it votes on
    dev_correct: int

    @property
    def coverage(self) -> float:
        return self.pool_matches / self.pool_total if self.pool_total else 0.0


def seed_rules(*, project: Project) -> list[SeedRule]:
    """The project's imported rule votes (``Example.votes["external"]``) as seed rules, with
    pool coverage and gold dev agreement; [] when the examples carry no such votes (or
    different numbers of them, which training ignores too)."""
    from apps.training.data import EXTERNAL_VOTES

    names = label_names(project)
    pool: list[list[int]] = []
    dev: list[list[int]] = []
    dev_gold: list[int] = []
    rows = Example.objects.filter(project=project, split__in=("pool", "dev")).values_list(
        "split", "votes", "gold_label"
    )
    for split, votes, gold in rows.iterator(chunk_size=5000):
        column = votes.get(EXTERNAL_VOTES) if isinstance(votes, dict) else None
        if not isinstance(column, list):
            if split == "pool":
                return []
            continue
        if split == "pool":
            pool.append(column)
        elif gold is not None:
            dev.append(column)
            dev_gold.append(int(gold))
    widths = {len(v) for v in pool + dev}
    if not pool or len(widths) != 1 or 0 in widths:
        return []
    P = np.asarray(pool, dtype=np.int64)  # (n_pool, m)
    D = np.asarray(dev, dtype=np.int64).reshape(len(dev), P.shape[1])  # (n_dev, m)
    y = np.asarray(dev_gold, dtype=np.int64)  # (n_dev,)
    out = []
    for j in range(P.shape[1]):
        voted = P[:, j][P[:, j] >= 0]
        on_dev = D[:, j] >= 0
        out.append(
            SeedRule(
                number=j + 1,
                labels=[names[k] if 0 <= k < len(names) else str(k) for k in np.unique(voted)],
                pool_matches=int(voted.size),
                pool_total=int(P.shape[0]),
                dev_matched=int(on_dev.sum()),
                dev_correct=int((D[on_dev, j] == y[on_dev]).sum()),
            )
        )
    return out


def seed_rules_use(*, project: Project) -> str:
    """Whether training uses the imported rule votes as seed rules, in words."""
    from apps.training.prboost_settings import prboost_settings
    from apps.training.services import latest_live_round

    on = prboost_settings(project)["use_imported_votes"]
    latest = latest_live_round(project=project)
    if latest is None:
        if on:
            return "Used as seed rules from the first boosting round."
        return "Not used: “Use imported rule votes as seed rules” is off in the training settings."
    used = (latest.metrics or {}).get("seed_votes")
    if used is None:  # a round stored before rounds recorded it: the setting decided
        used = on
    if used:
        return f"Used as seed rules by the rounds up to round {latest.number}."
    return f"Not used by the rounds up to round {latest.number}."
