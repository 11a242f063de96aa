"""The gold labeling page: one example at a time, keyboard first (number keys label, ``u`` undoes,
``s``/space skips), from a split, from the pool at random, or from the pool least sure first
(active learning: the smallest margin between the current label's two likeliest labels first).

With overlap (k > 1 labels per example, ``apps.agreement``) each label is one annotator's answer.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from apps.datasets import selectors, services
from apps.datasets.highlight import highlight_entities
from apps.datasets.models import Split
from apps.datasets.views import _undo_history, _wants_region
from apps.projects.selectors import get_project_for_user

SKIP_LIMIT = 1000


# Where examples to label come from (``?source=``): unlabeled ones of the split itself, the pool
# at random, or the pool least sure first (active learning: smallest margin first).
LEAST_SURE = "least_sure"


def _label_mode(params) -> tuple[str, bool]:
    split = params.get("split", Split.DEV)
    if split not in services.GOLD_SPLITS:
        split = Split.DEV
    return split, params.get("source") in ("pool", LEAST_SURE)


def _least_sure(params) -> bool:
    return params.get("source") == LEAST_SURE


def _mode_key(project, split: str, from_pool: bool, least_sure: bool = False) -> str:
    source = LEAST_SURE if least_sure else ("pool" if from_pool else "split")
    return f"{project.pk}:{split}:{source}"


def _session_dict(request, name: str) -> dict:
    value = request.session.get(name)
    if not isinstance(value, dict):
        value = {}
        request.session[name] = value
    return value


def _label_url(project, split: str, from_pool: bool, least_sure: bool = False) -> str:
    query = {"split": split}
    if from_pool:
        query["source"] = LEAST_SURE if least_sure else "pool"
    return f"{reverse('datasets:label', args=[project.pk])}?{urlencode(query)}"


QUEUE_PREVIEW = 5  # the least-sure queue shows this many examples after the current one


def _queue_context(project, example, candidates) -> dict:
    """What the least-sure card shows about the queue: the current example's label and margin,
    and the next few in order (the order itself is the explanation)."""
    names = project.labels or []
    after = []
    if example is not None:
        after = list(
            candidates.exclude(pk=example.pk).values("pk", "external_id", "margin", "label")[
                :QUEUE_PREVIEW
            ]
        )
    for row in after:
        row["label_name"] = services.label_name(project, row["label"])
    current = None
    if example is not None and example.margin is not None:
        current = {
            "label_name": services.label_name(project, example.label)
            if example.label is not None
            else "",
            "percent": f"{100 * (example.confidence or 0):.1f}",
            "margin": example.margin,
            "source": example.get_label_source_display(),
        }
    return {
        "queue_current": current,
        "queue_next": after,
        "queue_left": selectors.bounded_count(candidates),
        "queue_unscored": selectors.unscored_pool_count(project=project),
        "n_labels": len(names),
    }


def _overlap(project) -> int:
    # apps.agreement builds on datasets (its answers point at examples), so the gold labeling
    # page asks it for overlap at the point of use rather than importing it at module level.
    from apps.agreement import services as agreement_services

    return agreement_services.overlap_for(project=project)


def _card_context(
    request,
    project,
    split: str,
    from_pool: bool,
    *,
    k: int,
    current_id=None,
    least_sure: bool = False,
) -> dict:
    """The card's context; ``k``: the project's overlap (``_overlap``)."""
    from apps.agreement import selectors as agreement_selectors
    from apps.agreement import services as agreement_services

    key = _mode_key(project, split, from_pool, least_sure)
    skipped = _session_dict(request, "label_skipped").get(key, [])
    current = _session_dict(request, "label_current")
    if current_id is None:
        current_id = current.get(key)
    candidates = None
    if k > 1:
        candidates = agreement_selectors.overlap_candidates(
            project=project, user=request.user, split=split, from_pool=from_pool, k=k
        )
    example = services.next_example_to_label(
        project=project,
        user=request.user,
        split=split,
        from_pool=from_pool,
        exclude_ids=skipped,
        current_id=current_id,
        candidates=candidates,
        least_sure=least_sure,
    )
    current[key] = example.pk if example else None
    request.session.modified = True
    progress = selectors.gold_progress(project=project, split=split)
    progress["percent"] = (
        round(100 * progress["labeled"] / progress["total"]) if progress["total"] else 0
    )
    labels = [
        {"index": index, "name": name, "key": str(index + 1) if index < 9 else ""}
        for index, name in enumerate(project.labels or [])
    ]
    pool_left = None
    queue = {}
    if least_sure:
        base = (
            candidates
            if candidates is not None
            else selectors.label_candidates(project=project, split=split, from_pool=True)
        )
        queue = _queue_context(
            project, example, selectors.least_sure_first(base.exclude(id__in=skipped))
        )
    elif from_pool:
        pool_left = selectors.bounded_count(
            candidates
            if candidates is not None
            else selectors.label_candidates(project=project, split=split, from_pool=True)
        )
    return {
        "project": project,
        "example": example,
        "text": highlight_entities(example.text, example.entities) if example else "",
        "labels": labels,
        "split": split,
        "from_pool": from_pool,
        "least_sure": least_sure,
        "source": LEAST_SURE if least_sure else ("pool" if from_pool else "split"),
        **queue,
        "progress": progress,
        "pool_left": pool_left,
        "skipped_count": len(skipped),
        "can_undo": bool(_session_dict(request, "label_recent_skips").get(key))
        or any(entry.get("project_id") == project.pk for entry in _undo_history(request))
        or (k > 1 and agreement_services.has_votes(project=project, user=request.user)),
        "overlap": k,
        "label_url": reverse("datasets:label", args=[project.pk]),
    }


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def label(request, project_id: int):
    """One example at a time: number keys label, ``u`` undoes, ``s``/space skips."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    params = request.POST if request.method == "POST" else request.GET
    split, from_pool = _label_mode(params)
    least_sure = _least_sure(params)
    k = _overlap(project)  # read once a request: the action and the next card both need it
    if request.method != "POST":
        context = _card_context(request, project, split, from_pool, k=k, least_sure=least_sure)
        template = "datasets/label.html" + ("#card" if _wants_region(request) else "")
        response = render(request, template, context)
        patch_vary_headers(response, ["HX-Request"])
        return response

    key = _mode_key(project, split, from_pool, least_sure)
    notice, level, current_id = _apply_label_action(request, project, split, from_pool, key, k=k)
    if _wants_region(request):
        context = _card_context(
            request, project, split, from_pool, k=k, current_id=current_id, least_sure=least_sure
        )
        context.update({"notice": notice, "notice_level": level})
        return render(request, "datasets/label.html#card", context)
    if notice:
        messages.add_message(request, messages.ERROR if level == "error" else messages.INFO, notice)
    if current_id is not None:
        _session_dict(request, "label_current")[key] = current_id
        request.session.modified = True
    return HttpResponseRedirect(_label_url(project, split, from_pool, least_sure), status=303)


def _apply_label_action(
    request, project, split, from_pool, key, *, k: int
) -> tuple[str, str, int | None]:
    """Run the posted decision; returns (notice, level, example to show next or None)."""

    action = request.POST.get("action", "label")
    example_id = request.POST.get("example_id", "")
    overlap = k
    if action == "undo":
        # ``u`` right after a skip brings the skipped example back (as in rule review); after a
        # label it takes the label back (with overlap, this annotator's answer).
        recent_skips = _session_dict(request, "label_recent_skips").get(key) or []
        if recent_skips:
            example_id = recent_skips.pop()
            skipped = _session_dict(request, "label_skipped").get(key, [])
            if example_id in skipped:
                skipped.remove(example_id)
            request.session.modified = True
            return f"Skip undone: example #{example_id} is back.", "info", example_id
        if overlap > 1:
            return _undo_vote(request, project, key)
        try:
            change = services.undo_last_gold_label(
                project=project, user=request.user, history=_undo_history(request)
            )
        except services.GoldLabelConflict as conflict:
            request.session.modified = True
            return conflict.message, "error", None
        request.session.modified = True
        if change is None:
            return "Nothing to undo.", "info", None
        skipped = _session_dict(request, "label_skipped").get(key, [])
        if change.example_id in skipped:
            skipped.remove(change.example_id)
        return (
            f"Undone: {services.label_name(project, change.label)} on example "
            f"#{change.example_id}.",
            "info",
            change.example_id,
        )
    if action == "reset_skips":
        _session_dict(request, "label_skipped")[key] = []
        request.session.modified = True
        return "Skipped examples are back in the queue.", "info", None
    if not example_id.isdigit():
        return "No example was given.", "error", None
    example = selectors.example_for_project(project=project, example_id=int(example_id))
    if example is None:
        return "That example is not in this project (any more).", "error", None
    if action == "skip":
        skipped = _session_dict(request, "label_skipped").setdefault(key, [])
        if example.pk not in skipped:
            skipped.append(example.pk)
            del skipped[:-SKIP_LIMIT]
        recent = _session_dict(request, "label_recent_skips").setdefault(key, [])
        recent.append(example.pk)
        del recent[:-SKIP_LIMIT]
        services.release_claim(example_id=example.pk, user=request.user)
        _session_dict(request, "label_current")[key] = None
        request.session.modified = True
        return "", "", None
    raw_label = request.POST.get("label", "")
    try:
        label_index = int(raw_label)
    except ValueError:
        return f"Not a label: {raw_label!r}.", "error", example.pk
    if overlap > 1:
        return _record_vote(request, project, key, example, label_index, split, from_pool)
    try:
        change = services.set_gold_label(
            example=example,
            label=label_index,
            user=request.user,
            split=split if from_pool else None,
            project=project,
        )
    except services.GoldLabelConflict as conflict:
        _session_dict(request, "label_current")[key] = None
        request.session.modified = True
        return conflict.message, "error", None
    except ValidationError as error:
        return " ".join(error.messages), "error", example.pk
    services.push_history(_undo_history(request), change)
    _session_dict(request, "label_recent_skips")[key] = []  # ``u`` now undoes this label
    _session_dict(request, "label_current")[key] = None
    request.session.modified = True
    return "", "", None


def _record_vote(request, project, key, example, label_index, split, from_pool):
    """Overlap labeling (k > 1): the answer is one of k; gold comes from agreement."""
    from apps.agreement import services as agreement_services  # see _overlap

    try:
        outcome = agreement_services.record_label(
            project=project,
            example=example,
            user=request.user,
            label=label_index,
            split=split if from_pool else None,
        )
    except services.GoldLabelConflict as conflict:
        _session_dict(request, "label_current")[key] = None
        request.session.modified = True
        return conflict.message, "error", None
    except ValidationError as error:
        return " ".join(error.messages), "error", example.pk
    _session_dict(request, "label_current")[key] = None
    request.session.modified = True
    if outcome.status == "conflict":
        return (
            f"Saved. The {outcome.votes} labels on {example.external_id} disagree: "
            "an admin will decide.",
            "info",
            None,
        )
    return "", "", None


def _undo_vote(request, project, key):
    from apps.agreement import services as agreement_services  # see _overlap

    try:
        vote = agreement_services.undo_last_vote(project=project, user=request.user)
    except services.GoldLabelConflict as conflict:
        return conflict.message, "error", None
    if vote is None:
        return "Nothing to undo.", "info", None
    skipped = _session_dict(request, "label_skipped").get(key, [])
    if vote.example_id in skipped:
        skipped.remove(vote.example_id)
        request.session.modified = True
    return (
        f"Undone: {services.label_name(project, vote.label)} on example #{vote.example_id}.",
        "info",
        vote.example_id,
    )
