"""Reads for preference projects: pairs by weight, the re-judgement and annotation queues,
agreement between annotators (Cohen's kappa from scikit-learn)."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

from django.db.models import Count, F, Q

from apps.alignment.models import (
    Choice,
    Decision,
    PairJudgement,
    PairSplit,
    PairStatus,
    PreferencePair,
    Rejudgement,
    WeightRun,
)
from apps.jobs.models import Artifact


def pairs_of(*, project):
    return PreferencePair.objects.filter(project=project)


def weighted_pairs(*, project, source: str = "", order: str = "asc"):
    """Active pool pairs with a weight, lowest first (``order="desc"``: highest first)."""
    qs = pairs_of(project=project).filter(
        split=PairSplit.POOL, status=PairStatus.ACTIVE, weight__isnull=False
    )
    if source:
        qs = qs.filter(source=source)
    return qs.order_by(F("weight").desc() if order == "desc" else F("weight").asc(), "id")


def top_weighted(*, project, fraction: float):
    """The ``fraction`` highest-weighted active pool pairs (the subset to train on)."""
    qs = weighted_pairs(project=project, order="desc")
    k = max(1, round(qs.count() * fraction))
    return qs[:k]


def sources_of(*, project) -> list[str]:
    return list(
        pairs_of(project=project)
        .exclude(source="")
        .values_list("source", flat=True)
        .distinct()
        .order_by("source")
    )


def latest_run(*, project) -> WeightRun | None:
    return WeightRun.objects.filter(project=project).first()


def latest_reward_model(*, project) -> Artifact | None:
    from apps.alignment.services import REWARD_MODEL_KIND

    return Artifact.objects.filter(project=project, kind=REWARD_MODEL_KIND).order_by("-id").first()


def split_counts(*, project) -> dict:
    rows = pairs_of(project=project).values("split", "status").annotate(n=Count("id"))
    out = {"pool": 0, "dev": 0, "test": 0, "discarded": 0, "weighted": 0}
    for r in rows:
        if r["status"] == PairStatus.DISCARDED:
            out["discarded"] += r["n"]
        else:
            out[r["split"]] += r["n"]
    out["weighted"] = pairs_of(project=project).filter(weight__isnull=False).count()
    out["total"] = out["pool"] + out["dev"] + out["test"] + out["discarded"]
    return out


def next_rejudge_pair(*, project) -> PreferencePair | None:
    """The lowest-weight active pool pair not re-judged yet."""
    return weighted_pairs(project=project).first()


def rejudge_counts(*, project) -> dict:
    rows = (
        Rejudgement.objects.filter(pair__project=project).values("decision").annotate(n=Count("id"))
    )
    out = {d.value: 0 for d in Decision}
    for r in rows:
        out[r["decision"]] = r["n"]
    out["total"] = sum(out.values())
    out["waiting"] = weighted_pairs(project=project).count()
    return out


def next_annotation_pair(*, project, user) -> PreferencePair | None:
    """The first active pair the user has not judged (pairs with fewer judgements first)."""
    return (
        pairs_of(project=project)
        .filter(status=PairStatus.ACTIVE)
        .exclude(judgements__user=user)
        .annotate(n_judged=Count("judgements"))
        .order_by("n_judged", "id")
        .first()
    )


def annotation_progress(*, project, user) -> dict:
    total = pairs_of(project=project).filter(status=PairStatus.ACTIVE).count()
    done = PairJudgement.objects.filter(pair__project=project, user=user).count()
    return {"done": done, "total": total}


def agreement(*, project) -> dict:
    """Per pair: judgements and the share agreeing with the majority; per annotator: Cohen's
    kappa against the dataset's label and against the other annotators on shared pairs."""
    from sklearn.metrics import cohen_kappa_score

    rows = list(
        PairJudgement.objects.filter(pair__project=project)
        .exclude(choice=Choice.SKIP)
        .values_list("pair_id", "user__username", "choice")
    )
    by_pair: dict[int, dict[str, str]] = defaultdict(dict)
    for pid, user, choice in rows:
        by_pair[pid][user] = choice
    pairs = []
    for pid, answers in sorted(by_pair.items()):
        counts = Counter(answers.values())
        top, n_top = counts.most_common(1)[0]
        pairs.append(
            {
                "pair_id": pid,
                "n": len(answers),
                "majority": top,
                "agreement": n_top / len(answers),
                "counts": dict(counts),
            }
        )
    labels = [c.value for c in Choice if c != Choice.SKIP]

    def kappa(a: list[str], b: list[str]) -> float | None:
        if len(a) < 2:
            return None
        if len(set(a) | set(b)) < 2:
            return 1.0 if a == b else 0.0
        return float(cohen_kappa_score(a, b, labels=labels))

    users = sorted({u for answers in by_pair.values() for u in answers})
    annotators = []
    for user in users:
        mine = {pid: a[user] for pid, a in by_pair.items() if user in a}
        vs_label = kappa(list(mine.values()), [Choice.CHOSEN.value] * len(mine))
        agree_label = sum(v == Choice.CHOSEN for v in mine.values()) / max(len(mine), 1)
        pair_kappas = []
        for other in users:
            if other == user:
                continue
            shared = [pid for pid in mine if other in by_pair[pid]]
            k = kappa([mine[p] for p in shared], [by_pair[p][other] for p in shared])
            if k is not None:
                pair_kappas.append(k)
        annotators.append(
            {
                "user": user,
                "n": len(mine),
                "agrees_with_label": agree_label,
                "kappa_vs_label": vs_label,
                "kappa_vs_others": sum(pair_kappas) / len(pair_kappas) if pair_kappas else None,
            }
        )
    overall = []
    for a, b in combinations(users, 2):
        shared = [pid for pid, ans in by_pair.items() if a in ans and b in ans]
        k = kappa([by_pair[p][a] for p in shared], [by_pair[p][b] for p in shared])
        if k is not None:
            overall.append(k)
    multi = [p for p in pairs if p["n"] >= 2]
    return {
        "pairs": multi,
        "annotators": annotators,
        "mean_pairwise_kappa": sum(overall) / len(overall) if overall else None,
        "n_multi": len(multi),
    }


def flipped_share(*, project) -> dict:
    """Of the re-judged pairs, how many annotators flipped (admins' summary)."""
    c = rejudge_counts(project=project)
    return {
        "flipped": c["flip"],
        "rejudged": c["total"],
        "share": c["flip"] / c["total"] if c["total"] else None,
    }


def pair_filter(*, project, q: str = ""):
    qs = pairs_of(project=project)
    if q:
        qs = qs.filter(Q(prompt__icontains=q) | Q(external_id=q))
    return qs
