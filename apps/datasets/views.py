"""Examples browser, example detail, disagreements and gold labeling pages (members only).

The pages work as plain links and GET/POST forms; htmx swaps only the region that changes
(the results table, the labeling card) and keeps the URL in step (``hx-push-url``).
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from apps.datasets import selectors, services
from apps.datasets.example_filters import FILTER_FIELDS, ExampleFilterForm
from apps.datasets.highlight import highlight_entities, highlight_terms
from apps.datasets.models import Split
from apps.projects.selectors import get_project_for_user

TEXT_PREVIEW_CHARS = 280
SKIP_LIMIT = 1000


def _wants_region(request) -> bool:
    """htmx asks for one region of the page (a history restore wants the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else None


def votes_summary(project, votes) -> str:
    """One line per vote set: how many rules voted, and for which labels
    (``external 3/10: HAM 1, SPAM 2``)."""
    parts = []
    for name, values in (votes or {}).items():
        if not isinstance(values, list):
            continue
        counts = Counter(v for v in values if isinstance(v, int) and v >= 0)
        by_label = ", ".join(
            f"{services.label_name(project, index)} {n}" for index, n in sorted(counts.items())
        )
        parts.append(
            f"{name} {sum(counts.values())}/{len(values)}" + (f": {by_label}" if by_label else "")
        )
    return "; ".join(parts)


def _row(project, example, terms, detail_prefix: str) -> dict:
    """Everything a table row shows, as ready strings (rendering stays cheap at 50 rows)."""
    return {
        "id": example.pk,
        "url": f"{detail_prefix}{example.pk}/",
        "text": highlight_terms(example.text, terms, max_chars=TEXT_PREVIEW_CHARS),
        "split": example.split,
        "gold": services.label_name(project, example.gold_label)
        if example.gold_label is not None
        else "—",
        "label": services.label_name(project, example.label) if example.label is not None else "—",
        "confidence": f"{example.confidence:.2f}" if example.confidence is not None else "—",
        "source": example.label_source or "—",
        "votes": votes_summary(project, example.votes) or "—",
        "student": _student_cell(project, example),
    }


def _student_cell(project, example) -> str:
    """The serving distilled student's prediction and confidence, or a dash."""
    pred = getattr(example, "student_prediction", None)
    if pred is None:
        return "—"
    return f"{services.label_name(project, pred.label)} ({pred.confidence:.2f})"


def _page_url(base_url: str, filters_query: str, extra: str = "") -> str:
    joined = "&".join(part for part in (filters_query, extra) if part)
    return f"{base_url}?{joined}" if joined else base_url


@login_required
@require_http_methods(["GET", "HEAD"])
def examples(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id)
    form = ExampleFilterForm(request.GET, project=project)
    rows, page, count, notice = [], None, None, None
    before = None
    filters_query = urlencode(
        [(key, request.GET[key]) for key in FILTER_FIELDS if request.GET.get(key)]
    )
    base_url = reverse("datasets:examples", args=[project.pk])
    bounds = selectors.id_bounds(project=project)
    if form.is_valid():
        queryset = selectors.examples_for_project(project=project, **form.selector_kwargs())
        after, before = _int_param(request, "after"), _int_param(request, "before")
        number = _int_param(request, "page")
        if request.GET.get("page") == "last" and after is None and before is None:
            total = selectors.count_within(queryset)
            if total is not None:
                number = max(1, -(-total // selectors.PAGE_SIZE))
            else:  # too slow to count: the last rows, backwards from past the highest id
                before = bounds[1] + 1 if bounds[1] is not None else None
        if number is not None and after is None and before is None:
            if number * selectors.PAGE_SIZE > selectors.MAX_PAGE_JUMP_ROWS:
                notice = "That page is too deep to jump to; narrow the filters instead."
            else:
                page = selectors.numbered_page(queryset, number=number)
                if page is None:
                    notice = "Finding that page took too long; narrow the filters instead."
                elif not page.items and number > 1:
                    notice = f"There is no page {number:,}."
        if page is None or (not page.items and number and number > 1):
            page = selectors.keyset_page(
                queryset,
                after=after,
                before=before,
                id_bounds=bounds if selectors.uses_text_search(queryset) else None,
            )
        terms = selectors.search_terms(form.cleaned_data.get("search") or "")
        # One extra query for the page's student predictions (not a join in the page query).
        prefetch_related_objects(page.items, "student_prediction")
        rows = [_row(project, example, terms, base_url) for example in page.items]
        count = selectors.count_matches(queryset)
    has_prev, has_next = bool(page and page.has_previous), bool(page and page.has_next)
    if has_next and before is not None and bounds[1] is not None and before > bounds[1]:
        has_next = False  # the last page, reached backwards from past the highest id
    context = {
        "project": project,
        "form": form,
        "filter_fields": form.rendered_fields(),
        "rows": rows,
        "page": page,
        "count": count,
        "notice": notice,
        "base_url": base_url,
        "filters_query": filters_query,
        "next_url": _page_url(base_url, filters_query, f"after={page.next_after}")
        if has_next
        else None,
        "prev_url": _page_url(base_url, filters_query, f"before={page.prev_before}")
        if has_prev
        else None,
        "first_url": _page_url(base_url, filters_query) if has_prev else None,
        "last_url": _page_url(base_url, filters_query, "page=last") if has_next else None,
        "count_url": _page_url(
            reverse("datasets:examples_count", args=[project.pk]),
            filters_query,
            f"first={page.items[0].id}" if page and page.items else "",
        )
        if count is not None
        else None,
        "unindexed": selectors.unindexed_for_search(project=project),
    }
    template = "datasets/examples.html" + ("#results" if _wants_region(request) else "")
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "HEAD"])
def examples_count(request, project_id: int):
    """The exact number of matching examples and the page's number, asked for by the examples
    page after it is shown (counting a million rows must not hold the page up)."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    form = ExampleFilterForm(request.GET, project=project)
    if not form.is_valid():
        return render(request, "datasets/_examples_count.html", {"count": None})
    queryset = selectors.examples_for_project(project=project, **form.selector_kwargs())
    total = selectors.count_within(queryset)
    first = _int_param(request, "first")
    number = selectors.page_number(queryset, first_id=first) if first is not None else None
    page_count = None if total is None else max(1, -(-total // selectors.PAGE_SIZE))
    context = {
        "project": project,
        "form": form,
        "count": None if total is None else selectors.MatchCount(n=total, exact=True),
        "slow": total is None,
        "page_number": number,
        "page_count": page_count,
        "page_number_label": f"{number:,}" if number else "",
        "page_count_label": f"{page_count:,}" if page_count else "",
        "base_url": reverse("datasets:examples", args=[project.pk]),
        "filter_values": [(key, request.GET[key]) for key in FILTER_FIELDS if request.GET.get(key)],
    }
    return render(request, "datasets/_examples_count.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def example_detail(request, project_id: int, example_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id)
    example = selectors.example_for_project(project=project, example_id=example_id)
    if example is None:
        raise Http404("No such example in this project.")
    if request.method == "POST":
        _set_gold_from_detail(request, project, example)
        return HttpResponseRedirect(request.path, status=303)
    vote_sets = []
    for name, values in (example.votes or {}).items():
        if not isinstance(values, list):
            continue
        voted = [
            (index, services.label_name(project, v))
            for index, v in enumerate(values)
            if isinstance(v, int) and v >= 0
        ]
        vote_sets.append({"name": name, "voted": voted, "abstained": len(values) - len(voted)})
    context = {
        "project": project,
        "example": example,
        "text": highlight_entities(example.text, example.entities),
        "entities": [entity for entity in (example.entities or []) if isinstance(entity, dict)],
        "gold": services.label_name(project, example.gold_label)
        if example.gold_label is not None
        else None,
        "label": services.label_name(project, example.label) if example.label is not None else None,
        "vote_sets": vote_sets,
        "back_url": reverse("datasets:examples", args=[project.pk]),
        "labels": list(enumerate(project.labels or [])),
        "is_admin": project.user_role == "admin",
    }
    return render(request, "datasets/example_detail.html", context)


@login_required
@require_http_methods(["GET", "HEAD"])
def disagreements(request, project_id: int):
    """Where gold labels help most: unsure unlabeled dev/test examples, then disagreements."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    raw_after, raw_before = request.GET.get("after", ""), request.GET.get("before", "")
    after = selectors.DisagreementCursor.decode(raw_after) if raw_after else None
    before = selectors.DisagreementCursor.decode(raw_before) if raw_before else None
    bad_link = bool(raw_after and after is None) or bool(raw_before and before is None)
    queryset = selectors.disagreements_for_project(project=project)
    page = selectors.disagreement_page(
        queryset, after=after, before=before, size=selectors.PAGE_SIZE
    )
    detail_prefix = reverse("datasets:examples", args=[project.pk])
    rows = []
    for example in page.items:
        row = _row(project, example, [], detail_prefix)
        row["reason"] = "unsure, no gold" if example.bucket == 0 else "disagrees with gold"
        rows.append(row)
    base_url = reverse("datasets:disagreements", args=[project.pk])
    context = {
        "project": project,
        "rows": rows,
        "page": page,
        "count": selectors.count_matches(queryset),
        "bad_link": bad_link,
        "unsure_below": selectors.UNSURE_CONFIDENCE,
        "next_url": f"{base_url}?after={page.next_after.encode()}" if page.has_next else None,
        "prev_url": f"{base_url}?before={page.prev_before.encode()}" if page.has_previous else None,
        "first_url": base_url if page.has_previous else None,
    }
    template = "datasets/disagreements.html" + ("#results" if _wants_region(request) else "")
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _set_gold_from_detail(request, project, example) -> None:
    """A gold label given on the detail page; the outcome is shown as a message."""
    raw = request.POST.get("label", "")
    split = request.POST.get("split") or None
    try:
        label_index = None if raw == "clear" else int(raw)
        change = services.set_gold_label(
            example=example,
            label=label_index,
            user=request.user,
            split=split if example.split == Split.POOL and label_index is not None else None,
            overwrite=request.POST.get("overwrite") == "on",
            project=project,
        )
    except ValueError:
        messages.error(request, f"Not a label: {raw!r}.")
        return
    except services.GoldLabelConflict as conflict:
        messages.error(request, conflict.message)
        return
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
        return
    services.push_history(_undo_history(request), change)
    request.session.modified = True
    messages.success(
        request,
        f"Gold label set to {services.label_name(project, change.label)}."
        if change.label is not None
        else "Gold label cleared.",
    )


# --- gold labeling ---------------------------------------------------------------------------


def _overlap(project) -> int:
    # apps.agreement builds on datasets (its answers point at examples), so the gold labeling
    # page asks it for overlap at the point of use rather than importing it at module level.
    from apps.agreement import services as agreement_services

    return agreement_services.overlap_for(project=project)


def _label_mode(params) -> tuple[str, bool]:
    split = params.get("split", Split.DEV)
    if split not in services.GOLD_SPLITS:
        split = Split.DEV
    return split, params.get("source") == "pool"


def _mode_key(project, split: str, from_pool: bool) -> str:
    return f"{project.pk}:{split}:{'pool' if from_pool else 'split'}"


def _session_dict(request, name: str) -> dict:
    value = request.session.get(name)
    if not isinstance(value, dict):
        value = {}
        request.session[name] = value
    return value


def _undo_history(request) -> list:
    history = request.session.get("gold_undo")
    if not isinstance(history, list):
        history = []
        request.session["gold_undo"] = history
    return history


def _label_url(project, split: str, from_pool: bool) -> str:
    query = {"split": split}
    if from_pool:
        query["source"] = "pool"
    return f"{reverse('datasets:label', args=[project.pk])}?{urlencode(query)}"


def _card_context(
    request, project, split: str, from_pool: bool, *, k: int, current_id=None
) -> dict:
    """The card's context; ``k``: the project's overlap (``_overlap``)."""
    from apps.agreement import selectors as agreement_selectors
    from apps.agreement import services as agreement_services

    key = _mode_key(project, split, from_pool)
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
    if from_pool:
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
    k = _overlap(project)  # read once a request: the action and the next card both need it
    if request.method != "POST":
        context = _card_context(request, project, split, from_pool, k=k)
        template = "datasets/label.html" + ("#card" if _wants_region(request) else "")
        response = render(request, template, context)
        patch_vary_headers(response, ["HX-Request"])
        return response

    notice, level, current_id = _apply_label_action(request, project, split, from_pool, k=k)
    if _wants_region(request):
        context = _card_context(request, project, split, from_pool, k=k, current_id=current_id)
        context.update({"notice": notice, "notice_level": level})
        return render(request, "datasets/label.html#card", context)
    if notice:
        messages.add_message(request, messages.ERROR if level == "error" else messages.INFO, notice)
    if current_id is not None:
        _session_dict(request, "label_current")[_mode_key(project, split, from_pool)] = current_id
        request.session.modified = True
    return HttpResponseRedirect(_label_url(project, split, from_pool), status=303)


def _apply_label_action(
    request, project, split, from_pool, *, k: int
) -> tuple[str, str, int | None]:
    """Run the posted decision; returns (notice, level, example to show next or None)."""
    key = _mode_key(project, split, from_pool)
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
