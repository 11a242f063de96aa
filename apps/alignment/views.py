"""Pages of a preference project (htmx, keyboard-first): pairs and weights, import/export,
the re-judgement queue, pairwise annotation and agreement. Members see; admins launch jobs and
import. Non-members get 404 (``get_project_for_user``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.alignment import charts, kinds, pairs_io, selectors, services
from apps.alignment.models import PairSplit, PreferencePair
from apps.datasets.pipeline.exceptions import ImportFailed
from apps.jobs.models import FINISHED_STATUSES, Job
from apps.jobs.services import launch_job
from apps.projects.models import Role, TaskType
from apps.projects.selectors import get_project_for_user

PAGE_SIZE = 50


def _project(request, project_id: int, *, admin: bool = False):
    """The project for a member (404 for others). Pages of another task type show their empty
    state; writes to them (``_preference_project``) are refused."""
    return get_project_for_user(user=request.user, project_id=project_id, admin=admin)


def _preference_project(request, project_id: int, *, admin: bool = False):
    project = _project(request, project_id, admin=admin)
    if project.task_type != TaskType.PREFERENCE:
        raise Http404("Not a preference project.")
    return project


def _jobs(project) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind__in=kinds.ALIGNMENT_KINDS)
        .select_related("launched_by")
        .order_by("-created_at", "-id")[:5]
    )


@login_required
@require_GET
def weights(request, project_id: int):
    project = _project(request, project_id)
    source = request.GET.get("source", "")
    order = "desc" if request.GET.get("order") == "desc" else "asc"
    qs = selectors.weighted_pairs(project=project, source=source, order=order)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    run = selectors.latest_run(project=project)
    all_weights = list(
        selectors.weighted_pairs(project=project, source=source).values_list("weight", flat=True)
    )
    jobs = _jobs(project)
    context = {
        "project": project,
        "is_admin": project.user_role == Role.ADMIN,
        "page": page,
        "source": source,
        "order": order,
        "sources": selectors.sources_of(project=project),
        "counts": selectors.split_counts(project=project),
        "run": run,
        "hist": charts.histogram(all_weights),
        "curve": charts.curve(run.metrics.get("curve", [])) if run else None,
        "jobs": jobs,
        "active_job": next((j for j in jobs if j.status not in FINISHED_STATUSES), None),
        "model": selectors.latest_reward_model(project=project),
        "flips": selectors.flipped_share(project=project),
    }
    if request.htmx and request.headers.get("HX-Target") == "pairs-table":
        return render(request, "alignment/weights.html#pairs_table", context)
    if request.htmx and request.headers.get("HX-Target") == "dorm-jobs":
        return render(request, "alignment/weights.html#jobs", context)
    return render(request, "alignment/weights.html", context)


@login_required
@require_POST
def launch(request, project_id: int):
    project = _preference_project(request, project_id, admin=True)
    action = request.POST.get("action")
    try:
        if action == "weights":
            params = kinds.clean_weights_params(
                {
                    "weights": request.POST.get("weights", "features"),
                    "method": request.POST.get("method", "penalty"),
                    "stage2": "stage2" in request.POST,  # an unchecked box is not sent
                    "reward_model": request.POST.get("reward_model", "head"),
                }
            )
            kind = kinds.COMPUTE_WEIGHTS
        elif action == "train":
            try:
                fraction = float(request.POST.get("fraction", "1") or 1)
            except ValueError as exc:
                raise ValidationError("The fraction must be a number between 0 and 1.") from exc
            params = kinds.clean_train_params(
                {
                    "fraction": fraction,
                    "weighted": "weighted" in request.POST,
                    "reward_model": request.POST.get("reward_model", "head"),
                }
            )
            kind = kinds.TRAIN_REWARD_MODEL
        else:
            raise ValidationError("Unknown action.")
        launch_job(kind=kind, project=project, user=request.user, params=params)
        messages.success(request, f"Started: {kinds.LAUNCHABLE[kind][0]}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("alignment:weights", project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def import_pairs(request, project_id: int):
    project = _project(request, project_id, admin=True)
    problems = None
    if request.method == "POST":
        project = _preference_project(request, project_id, admin=True)
        upload = request.FILES.get("file")
        split = request.POST.get("split", PairSplit.POOL)
        if upload is None:
            messages.error(request, "Choose a file to import.")
        else:
            suffix = "".join(Path(upload.name).suffixes[-2:]) or ".jsonl"
            with tempfile.TemporaryDirectory(prefix="frugal-pairs-") as tmp:
                path = Path(tmp) / f"upload{suffix}"
                with open(path, "wb") as f:
                    for chunk in upload.chunks():
                        f.write(chunk)
                try:
                    n = pairs_io.import_pairs(
                        project=project,
                        path=path,
                        name=Path(upload.name).name,
                        fmt=request.POST.get("format") or None,
                        default_split=split,
                    )
                except ImportFailed as exc:
                    problems = exc
                else:
                    messages.success(request, f"Imported {n:,} pairs.")
                    return redirect("alignment:weights", project.pk)
    return render(
        request,
        "alignment/import.html",
        {"project": project, "problems": problems, "splits": PairSplit.choices},
        status=400 if problems else 200,
    )


@login_required
@require_GET
def export(request, project_id: int):
    project = _project(request, project_id)
    return export_response(project=project, fmt=request.GET.get("format", "jsonl"))


def export_response(*, project, fmt: str):
    if fmt not in pairs_io.EXPORT_FORMATS:
        return HttpResponse(
            f"Unknown export format; use one of {', '.join(pairs_io.EXPORT_FORMATS)}.",
            status=400,
            content_type="text/plain",
        )
    qs = selectors.pairs_of(project=project)
    layout = "trl" if fmt == "trl" else "full"
    name = f"project-{project.pk}-pairs"
    if fmt == "parquet":
        body = pairs_io.export_parquet(pairs_io.export_rows(qs, layout="full"), layout="full")
        response = HttpResponse(body, content_type="application/vnd.apache.parquet")
        response["Content-Disposition"] = f'attachment; filename="{name}.parquet"'
        return response
    response = StreamingHttpResponse(
        pairs_io.export_jsonl(pairs_io.export_rows(qs, layout=layout)),
        content_type="application/x-ndjson",
    )
    suffix = "-trl" if fmt == "trl" else ""
    response["Content-Disposition"] = f'attachment; filename="{name}{suffix}.jsonl"'
    return response


# --------------------------------------------------------------------------- re-judgement
def _rejudge_context(request, project, notice: str = "") -> dict:
    return {
        "project": project,
        "is_admin": project.user_role == Role.ADMIN,
        "pair": selectors.next_rejudge_pair(project=project),
        "counts": selectors.rejudge_counts(project=project),
        "notice": notice,
    }


@login_required
@require_http_methods(["GET", "POST"])
def rejudge(request, project_id: int):
    project = _project(request, project_id)
    notice = ""
    if request.method == "POST":
        project = _preference_project(request, project_id)
        try:
            pair_id = int(request.POST.get("pair_id", ""))
        except ValueError:
            pair_id = -1
        try:
            rec = services.rejudge(
                project=project,
                pair_id=pair_id,
                user=request.user,
                decision=request.POST.get("decision", ""),
            )
            notice = {"confirm": "Confirmed", "flip": "Flipped", "discard": "Discarded"}[
                rec.decision
            ] + f" pair {rec.pair.external_id}."
        except ValidationError as exc:
            notice = " ".join(exc.messages)
    context = _rejudge_context(request, project, notice)
    if request.htmx:
        return render(request, "alignment/rejudge.html#card", context)
    return render(request, "alignment/rejudge.html", context)


# --------------------------------------------------------------------------- annotation
def _annotate_context(request, project, notice: str = "") -> dict:
    pair = selectors.next_annotation_pair(project=project, user=request.user)
    left = right = None
    if pair is not None:
        swapped = services.shown_swapped(user_id=request.user.pk, pair_id=pair.pk)
        left, right = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
    return {
        "project": project,
        "pair": pair,
        "left": left,
        "right": right,
        "progress": selectors.annotation_progress(project=project, user=request.user),
        "can_undo": services.PairJudgement.objects.filter(
            pair__project=project, user=request.user
        ).exists(),
        "notice": notice,
    }


@login_required
@require_http_methods(["GET", "POST"])
def annotate(request, project_id: int):
    project = _project(request, project_id)
    notice = ""
    if request.method == "POST":
        project = _preference_project(request, project_id)
        side = request.POST.get("side", "")
        if side == "undo":
            pair = services.undo_last_judgement(project=project, user=request.user)
            notice = "Undone." if pair else "Nothing to undo."
        else:
            try:
                pair_id = int(request.POST.get("pair_id", ""))
            except ValueError:
                pair_id = -1
            try:
                services.record_judgement(
                    project=project, pair_id=pair_id, user=request.user, side=side
                )
                notice = {"left": "Left is better.", "right": "Right is better."}.get(
                    side, f"{side.capitalize()}."
                )
            except ValidationError as exc:
                notice = " ".join(exc.messages)
    context = _annotate_context(request, project, notice)
    if request.htmx:
        return render(request, "alignment/annotate.html#card", context)
    return render(request, "alignment/annotate.html", context)


@login_required
@require_GET
def agreement(request, project_id: int):
    project = _project(request, project_id)
    data = selectors.agreement(project=project)
    ids = {p["pair_id"] for p in data["pairs"]}
    names = dict(PreferencePair.objects.filter(pk__in=ids).values_list("pk", "external_id"))
    for p in data["pairs"]:
        p["external_id"] = names.get(p["pair_id"], "")
    return render(request, "alignment/agreement.html", {"project": project, **data})


def project_dashboard(request, project):
    """The project dashboard of a preference project (called by apps.projects' dashboard view):
    pair counts by split, the latest weight run and reward model, links to the work pages."""
    run = selectors.latest_run(project=project)
    return render(
        request,
        "alignment/project_dashboard.html",
        {
            "project": project,
            "is_admin": project.user_role == Role.ADMIN,
            "counts": selectors.split_counts(project=project),
            "run": run,
            "model": selectors.latest_reward_model(project=project),
            "rejudged": selectors.rejudge_counts(project=project),
            "progress": selectors.annotation_progress(project=project, user=request.user),
        },
    )
