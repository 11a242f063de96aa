"""Rule pages: the review screen, the rules list, a rule's detail and the "write a rule" page.

Who may do what: every member of the project (annotators and admins) reviews suggestions and
writes keyword/regex rules; only admins delete rules. Non-members get 404.

Every page works with plain links and forms; htmx swaps only the region that changes (the
review card, the live preview, the rules table), and keyboard shortcuts press the same buttons.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from apps.projects.selectors import get_project_for_user
from apps.rules import selectors, services
from apps.rules.describe import label_names
from apps.rules.highlight import highlight_rule
from apps.rules.models import DecisionAction, RuleKind, RuleOrigin, RuleStatus
from apps.rules.precision import PRECISION_HELP, dev_precision_text, stats_precision_text
from models.prboost.rules import rule_from_dict

SAMPLE_CHARS = 320
EDIT_FIELDS = ("label", "words", "pattern", "threshold", "mode")


def _wants_region(request) -> bool:
    """htmx asks for one region of the page (a history restore wants the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(request, template: str, context: dict, status: int = 200):
    context = {"precision_help": PRECISION_HELP, **context}
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _labels(project) -> list[dict]:
    return [{"index": i, "name": name} for i, name in enumerate(label_names(project))]


def _percent(value) -> str:
    if value is None:
        return "—"
    return f"{100 * float(value):.1f}%"


def _stats_rows(rule) -> list[tuple[str, str, str]]:
    """(name, value, help) rows for the stats panel, from what the round stored."""
    stats = rule.stats or {}
    rows = []
    if "coverage" in stats:
        matches = stats.get("pool_matches")
        rows.append(
            (
                "Coverage",
                _percent(stats["coverage"]) + (f" ({matches:,} pool)" if matches else ""),
                "share of the unlabeled pool the rule labels",
            )
        )
    if "dev_precision" in stats or "dev_correct" in stats:
        rows.append(("Dev precision", stats_precision_text(stats), PRECISION_HELP))
    if stats.get("novelty") is not None:
        rows.append(("New", _percent(stats["novelty"]), "matches no accepted rule covers"))
    if stats.get("overlap") is not None:
        rows.append(("Overlap", _percent(stats["overlap"]), "matches accepted rules also label"))
    if stats.get("conflict") is not None:
        rows.append(
            ("Conflict", _percent(stats["conflict"]), "matches accepted rules label differently")
        )
    return rows


def _samples(project, rule, built) -> list[dict]:
    ids = (rule.evidence or {}).get("sample_example_ids") or []
    if ids:
        examples = selectors.sample_examples(project=project, ids=ids[:10])
        return [
            {
                "id": e.pk,
                "html": highlight_rule(built, e.text, max_chars=SAMPLE_CHARS),
            }
            for e in examples
        ]
    preview = services.preview_rule(project=project, definition=rule.definition)
    return [{"id": s.example_id, "html": s.html} for s in preview.samples]


def _edit_values(rule) -> dict:
    d = rule.definition or {}
    words = d.get("words") or d.get("answer_words") or []
    return {
        "label": rule.label,
        "words": ", ".join(words),
        "pattern": d.get("pattern", ""),
        "threshold": d.get("threshold", ""),
        "mode": d.get("mode", "any"),
    }


def _card_context(request, project, rule, *, notice: str = "", level: str = "info") -> dict:
    round_number = rule.round_number if rule else selectors.current_round(project=project)
    context = {
        "project": project,
        "rule": rule,
        "notice": notice,
        "notice_level": level,
        "round_number": round_number,
        "progress": selectors.review_progress(project=project, round_number=round_number),
        "can_undo": services.can_undo(project=project, user=request.user),
        "labels": _labels(project),
        "review_url": reverse("rules:review", args=[project.pk]),
        "held_by_others": []
        if rule is not None
        else selectors.held_by_others(
            project=project, user=request.user, round_number=round_number
        ),
    }
    if rule is not None:
        built = rule_from_dict(rule.definition)
        evidence = rule.evidence or {}
        source_text = evidence.get("source_text") or ""
        context.update(
            {
                "label_name": label_names(project)[rule.label]
                if rule.label < len(project.labels or [])
                else f"class {rule.label}",
                "stats_rows": _stats_rows(rule),
                "samples": _samples(project, rule, built),
                "source_html": highlight_rule(built, source_text) if source_text else "",
                "source_id": evidence.get("source_example_id"),
                "answer_word": evidence.get("answer_word"),
                "edit": _edit_values(rule),
                "votes": rule.decisions.filter(
                    undone=False, action__in=services.VOTING_ACTIONS
                ).count()
                if rule.decisions_needed > 1
                else None,
                "preview_url": reverse("rules:rule_preview", args=[project.pk, rule.pk]),
            }
        )
    return context


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def review(request, project_id: int):
    """The review screen: one suggestion at a time, decided with a key press."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    notice, level = "", "info"
    if request.method == "POST":
        notice, level = _apply_review_post(request, project)
        if not _wants_region(request):
            if notice:
                getattr(messages, level if level in ("error", "success") else "info")(
                    request, notice
                )
            return HttpResponseRedirect(reverse("rules:review", args=[project.pk]))
    rule = services.next_suggestion_for(project=project, user=request.user)
    context = _card_context(request, project, rule, notice=notice, level=level)
    if _wants_region(request):
        return _render(request, "rules/review.html#card", context)
    return _render(request, "rules/review.html", context)


def _apply_review_post(request, project) -> tuple[str, str]:
    """Do what the review form asked; returns (notice, level) for the next card."""
    action = request.POST.get("action", "")
    if action == "undo":
        try:
            rule = services.undo_last_decision(project=project, user=request.user)
        except services.RuleConflict as exc:
            return exc.message, "error"
        except services.RuleInputError as exc:
            return exc.message, "error"
        if rule is None:
            return "Nothing to undo.", "info"
        return f"Undone: {rule.description}", "success"
    rule_id = request.POST.get("rule_id", "")
    if not rule_id.isdigit():
        return "That suggestion is no longer there.", "error"
    rule = selectors.get_rule(project=project, rule_id=int(rule_id))
    edits = None
    if action in (DecisionAction.ACCEPT, DecisionAction.EDIT):
        # The edit fields travel with every accept: what the reviewer sees is what is accepted.
        edits = {name: request.POST[name] for name in EDIT_FIELDS if name in request.POST} or None
    if action not in (DecisionAction.ACCEPT, DecisionAction.REJECT, DecisionAction.SKIP, "edit"):
        return "Choose accept, reject, skip, edit or undo.", "error"
    try:
        rule = services.decide(
            rule=rule,
            user=request.user,
            action=action,
            expected_version=request.POST.get("version", ""),
            edits=edits,
        )
    except services.RuleConflict as exc:
        return exc.message + " Here is the next suggestion.", "warning"
    except services.RuleInputError as exc:
        return exc.message, "error"
    words = {
        DecisionAction.ACCEPT: "Accepted",
        DecisionAction.REJECT: "Rejected",
        DecisionAction.SKIP: "Skipped",
        DecisionAction.EDIT: "Saved",
    }
    if action in services.VOTING_ACTIONS and rule.status == RuleStatus.SUGGESTED:
        return f"Your vote is in ({words[action].lower()}); the rule needs more votes.", "success"
    return f"{words[action]}: {rule.description}", "success"


@login_required
@require_http_methods(["GET", "HEAD"])
def rule_preview(request, project_id: int, rule_id: int):
    """The live preview of an edit of a rule (counts and samples as the edit is typed)."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    rule = selectors.get_rule(project=project, rule_id=rule_id)
    edits = {name: request.GET.get(name, "") for name in EDIT_FIELDS}
    try:
        definition = services.apply_edits(rule=rule, edits=edits)
    except services.RuleInputError as exc:
        preview = services.Preview(error=exc.message)
    else:
        preview = services.preview_rule(project=project, definition=definition)
    return _render(request, "rules/_preview.html", {"project": project, "preview": preview})


@login_required
@require_http_methods(["GET", "HEAD"])
def preview(request, project_id: int):
    """The live preview of the "write a rule" form."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    try:
        definition = services.build_definition(project=project, **_rule_form(request.GET))
    except services.RuleInputError as exc:
        result = services.Preview(error=exc.message)
    else:
        result = services.preview_rule(project=project, definition=definition)
    return _render(request, "rules/_preview.html", {"project": project, "preview": result})


def _rule_form(data) -> dict:
    kind = data.get("kind", RuleKind.KEYWORD)
    return {
        "kind": kind,
        "label": data.get("label", ""),
        "words": data.get("words", "") if kind == RuleKind.KEYWORD else None,
        "pattern": data.get("pattern", "") if kind == RuleKind.REGEX else None,
        "mode": data.get("mode", "any") if data.get("mode") in ("any", "all") else "any",
        "case_sensitive": data.get("case_sensitive") == "on",
    }


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def new_rule(request, project_id: int):
    """Write a keyword or regex rule, with a live preview; saving accepts it."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    values = _rule_form(request.POST if request.method == "POST" else request.GET)
    error = ""
    if request.method == "POST":
        try:
            rule = services.create_manual_rule(project=project, user=request.user, **values)
        except services.RuleInputError as exc:
            error = exc.message
        else:
            messages.success(request, f"Rule saved and accepted: {rule.description}")
            return HttpResponseRedirect(reverse("rules:detail", args=[project.pk, rule.pk]))
    context = {
        "project": project,
        "values": values,
        "labels": _labels(project),
        "error": error,
        "preview_url": reverse("rules:preview", args=[project.pk]),
    }
    return _render(request, "rules/new.html", context, status=400 if error else 200)


@login_required
@require_http_methods(["GET", "HEAD"])
def rule_list(request, project_id: int):
    """All rules of the project, filtered by status, origin, kind, round and words."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    filters = {
        "status": request.GET.get("status") if request.GET.get("status") in RuleStatus else None,
        "origin": request.GET.get("origin") if request.GET.get("origin") in RuleOrigin else None,
        "kind": request.GET.get("kind") if request.GET.get("kind") in RuleKind else None,
        "round": int(request.GET["round"]) if request.GET.get("round", "").isdigit() else None,
        "q": request.GET.get("q", "").strip()[:200] or None,
    }
    rules = selectors.rules_for_project(project=project, **filters).order_by("-updated_at", "-id")
    page = Paginator(rules, 50).get_page(request.GET.get("page"))
    for rule in page.object_list:
        stats = rule.stats or {}
        rule.coverage_text = _percent(stats.get("coverage"))
        rule.precision_text = stats_precision_text(stats)
    query = {k: v for k, v in filters.items() if v is not None}
    context = {
        "project": project,
        "page": page,
        "filters": filters,
        "query": urlencode(query),
        "counts": selectors.status_counts(project=project),
        "statuses": RuleStatus.choices,
        "origins": RuleOrigin.choices,
        "kinds": RuleKind.choices,
        "labels": label_names(project),
        "current_round": selectors.current_round(project=project),
    }
    if _wants_region(request):
        return _render(request, "rules/list.html#table", context)
    # Seed rules (imported rule votes) sit above the table: the filters' swaps leave them be.
    seeds = selectors.seed_rules(project=project)
    for seed in seeds:
        seed.coverage_text = _percent(seed.coverage)
        seed.precision_text = dev_precision_text(correct=seed.dev_correct, matched=seed.dev_matched)
    context["seeds"] = seeds
    context["seeds_use"] = selectors.seed_rules_use(project=project) if seeds else ""
    return _render(request, "rules/list.html", context)


@login_required
@require_http_methods(["GET", "HEAD"])
def rule_detail(request, project_id: int, rule_id: int):
    """One rule: what it says, its evidence, its matches now, and its decision history."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    rule = selectors.get_rule(project=project, rule_id=rule_id, with_decisions=True)
    context = _card_context(request, project, rule)
    context["decisions"] = list(rule.decisions.all())
    context["preview"] = services.preview_rule(project=project, definition=rule.definition)
    context["is_admin"] = project.user_role == "admin"
    return _render(request, "rules/detail.html", context)


@login_required
@require_http_methods(["POST"])
def decide(request, project_id: int, rule_id: int):
    """Accept or reject a rule from its detail page (any status; the version must match)."""
    project = get_project_for_user(user=request.user, project_id=project_id)
    rule = selectors.get_rule(project=project, rule_id=rule_id)
    action = request.POST.get("action", "")
    if action not in (DecisionAction.ACCEPT, DecisionAction.REJECT):
        messages.error(request, "Choose accept or reject.")
    else:
        try:
            services.decide(
                rule=rule,
                user=request.user,
                action=action,
                expected_version=request.POST.get("version", ""),
            )
        except services.RuleConflict as exc:
            messages.warning(request, exc.message)
        except services.RuleInputError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Accepted." if action == "accept" else "Rejected.")
    return HttpResponseRedirect(reverse("rules:detail", args=[project.pk, rule.pk]))


@login_required
@require_http_methods(["POST"])
def delete(request, project_id: int, rule_id: int):
    """Delete a rule and its history (project admins only)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    rule = selectors.get_rule(project=project, rule_id=rule_id)
    description = rule.description
    services.delete_rule(rule=rule)
    messages.success(request, f"Deleted: {description}")
    return HttpResponseRedirect(reverse("rules:list", args=[project.pk]))
