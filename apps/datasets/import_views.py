"""Import pages (project admins): choose a source and format, pick CSV columns, start the job.

Step 1 (``imports:new``) takes an upload or a server path. CSV/TSV/JSONL go to step 2, an htmx
partial showing the header (JSONL: the keys) and the first rows with a select per column role
(``imports:columns``); other formats start the job at once. Either way the browser lands on the
job's page. Staged uploads are remembered in the session by a random token.
"""

import secrets

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.datasets import import_services as services
from apps.datasets.models import Split
from apps.datasets.pipeline import FORMATS
from apps.jobs.models import Job
from apps.projects.models import TaskType
from apps.projects.selectors import get_project_for_user

SESSION_KEY = "frugal_import_staged"
FORMAT_CHOICES = [("", "Detect from the name")] + [
    (fmt, {"json": "JSON (array)", "wrench": "WRENCH folder / .zip"}.get(fmt, fmt.upper()))
    for fmt in FORMATS
]
DELIMITERS = [(",", "comma"), ("\t", "tab"), (";", "semicolon"), ("|", "pipe")]


class ImportSourceForm(forms.Form):
    source = forms.ChoiceField(
        choices=[("upload", "Upload a file"), ("path", "A path on the server")],
        initial="upload",
        widget=forms.RadioSelect,
    )
    file = forms.FileField(required=False, help_text="CSV, TSV, JSONL, JSON, Parquet, or a .zip")
    path = forms.CharField(
        required=False,
        max_length=1000,
        help_text="A file or WRENCH folder below the allowed import folders.",
    )
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    default_split = forms.ChoiceField(
        choices=Split.choices,
        initial=Split.POOL,
        help_text="For rows that do not say their split.",
    )
    keep_train_labels = forms.BooleanField(
        required=False,
        label="Keep WRENCH train labels as gold",
        help_text="By default the pool (train.json) is imported unlabeled.",
    )

    clean_text = forms.BooleanField(
        required=False,
        label="Clean HTML entities and byte order marks",
        help_text="“&amp;” → “&”, “&#39;” → “'”, “<br />” → a line break, stray byte order "
        "marks removed. Off by default: the text is kept exactly as in the file. "
        "(Relation extraction texts are always kept exact: entity spans point into them.)",
    )

    def clean(self):
        data = super().clean()
        if data.get("source") == "upload" and not data.get("file"):
            self.add_error("file", "Choose a file to upload.")
        if data.get("source") == "path" and not (data.get("path") or "").strip():
            self.add_error("path", "Give a path on the server.")
        return data


def _staged(request) -> dict:
    return request.session.get(SESSION_KEY, {})


def _remember(request, entry: dict) -> str:
    token = secrets.token_hex(16)
    staged = _staged(request)
    staged[token] = entry
    request.session[SESSION_KEY] = staged
    return token


def _forget(request, token: str) -> dict | None:
    staged = _staged(request)
    entry = staged.pop(token, None)
    request.session[SESSION_KEY] = staged
    return entry


def _recent_imports(project):
    return Job.objects.filter(project=project, kind=services.IMPORT_JOB_KIND).order_by(
        "-created_at"
    )[:5]


def _go_to_job(request, job):
    url = reverse("jobs:detail", args=[job.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


COLUMN_STEP_FORMATS = ("csv", "tsv", "jsonl")


def _columns_context(project, token: str, entry: dict, delimiter: str | None = None) -> dict:
    if entry["format"] == "jsonl":
        preview = services.jsonl_preview(
            path=services.source_path(entry), name=entry.get("display_name") or ""
        )
    else:
        preview = services.csv_preview(
            path=services.source_path(entry),
            fmt=entry["format"],
            delimiter=delimiter or entry.get("delimiter") or None,
            name=entry.get("display_name") or "",
        )
    guesses = services.guess_columns(preview["header"])
    if entry["format"] == "jsonl":
        # Frugal's own JSONL export: "label" is the current label, the gold one is gold_label.
        for gold in ("gold_label_name", "gold_label"):
            if gold in preview["header"]:
                guesses["label"] = gold
                break
    roles = [
        ("text", "Text", True),
        ("label", "Label (gold)", False),
        ("id", "Id", False),
        ("split", "Split", False),
    ]
    if project.task_type == TaskType.RELATION_EXTRACTION:
        roles += [
            ("entity1", "Entity 1", False),
            ("entity2", "Entity 2", False),
            ("span1", "Span 1 (start,end)", False),
            ("span2", "Span 2 (start,end)", False),
        ]
    return {
        "project": project,
        "token": token,
        "entry": entry,
        "preview": preview,
        "roles": [
            {"key": key, "label": label, "required": required, "guess": guesses.get(key, "")}
            for key, label, required in roles
        ],
        "delimiters": DELIMITERS,
    }


@login_required
@require_http_methods(["GET", "POST"])
def import_start(request, project_id: int):
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    form = ImportSourceForm(request.POST or None, request.FILES or None)
    error_list: list[str] = []
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        staged_path = None
        try:
            if data["source"] == "upload":
                staged_path, name = services.stage_upload(
                    uploaded=data["file"], fmt=data["format"] or None
                )
            else:
                path = services.resolve_server_path(data["path"])
                name = path.name
            source_path = staged_path or path
            params = services.build_params(
                source=data["source"],
                path=source_path,
                fmt=data["format"],
                default_split=data["default_split"],
                keep_train_labels=data["keep_train_labels"],
                display_name=name,
                clean_text=data["clean_text"],
            )
        except ValidationError as exc:
            if staged_path is not None:
                services.remove_staged(staged_path)
            error_list = exc.messages
        else:
            if params["format"] in COLUMN_STEP_FORMATS:
                token = _remember(request, params)
                try:
                    context = _columns_context(project, token, params)
                except ValidationError as exc:
                    _forget(request, token)
                    if staged_path is not None:
                        services.remove_staged(staged_path)
                    error_list = exc.messages
                else:
                    template = "imports/_columns.html" if request.htmx else "imports/columns.html"
                    return render(request, template, context)
            else:
                job = services.start_import(project=project, user=request.user, params=params)
                return _go_to_job(request, job)
    context = {
        "project": project,
        "form": form,
        "error_list": error_list,
        "roots": services.import_roots(),
        "max_bytes": settings.FRUGAL_IMPORT_MAX_BYTES,
        "recent": _recent_imports(project),
    }
    if request.htmx:
        # htmx swaps only 2xx answers: the form comes back with its errors in place.
        return render(request, "imports/_source_form.html", context)
    return render(
        request, "imports/new.html", context, status=400 if error_list or form.errors else 200
    )


@login_required
@require_GET
def import_preview(request, project_id: int):
    """The column step again, read with another delimiter (htmx partial)."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    token = request.GET.get("token", "")
    entry = _staged(request).get(token)
    if entry is None:
        return render(request, "imports/_expired.html", {"project": project}, status=410)
    delimiter = request.GET.get("delimiter") or None
    if delimiter not in {None, *(d for d, _ in DELIMITERS)}:
        delimiter = None
    try:
        context = _columns_context(project, token, entry, delimiter)
    except ValidationError as exc:
        return render(request, "imports/_problems.html", {"error_list": exc.messages}, status=400)
    return render(request, "imports/_columns.html", context)


@login_required
@require_POST
def import_columns(request, project_id: int):
    """Start the import of a staged CSV/TSV/JSONL with the chosen columns."""
    project = get_project_for_user(user=request.user, project_id=project_id, admin=True)
    token = request.POST.get("token", "")
    entry = _staged(request).get(token)
    if entry is None:
        return render(request, "imports/_expired.html", {"project": project}, status=410)
    columns = {
        key: request.POST.get(f"column_{key}", "").strip()
        for key in services.COLUMN_KEYS
        if request.POST.get(f"column_{key}", "").strip()
    }
    delimiter = request.POST.get("delimiter") or entry.get("delimiter") or ""
    try:
        if "text" not in columns:
            raise ValidationError("Choose the column that holds the text.")
        params = services.build_params(
            source=entry["source"],
            path=services.source_path(entry),
            fmt=entry["format"],
            columns=columns,
            delimiter=delimiter,
            default_split=entry["default_split"],
            keep_train_labels=entry["keep_train_labels"],
            display_name=entry["display_name"],
            clean_text=entry.get("clean_text", False),
        )
        context = _columns_context(project, token, entry, delimiter)
        header = context["preview"]["header"]
        missing = [c for c in columns.values() if c not in header]
        if missing:
            raise ValidationError(f"No column named {', '.join(missing)} in the header.")
    except ValidationError as exc:
        context = _columns_context(project, token, entry, delimiter)
        context["error_list"] = exc.messages
        template = "imports/_columns.html" if request.htmx else "imports/columns.html"
        return render(request, template, context, status=400)
    _forget(request, token)
    job = services.start_import(project=project, user=request.user, params=params)
    return _go_to_job(request, job)


@login_required
@require_POST
def import_discard(request, project_id: int):
    """Drop a staged upload (the "start over" button of the column step)."""
    get_project_for_user(user=request.user, project_id=project_id, admin=True)
    entry = _forget(request, request.POST.get("token", ""))
    if entry is not None and entry.get("source") == "upload":
        services.remove_staged(services.source_path(entry))
    return redirect("imports:new", project_id=project_id)
