"""Settings and launching: the PRBoost settings, template previews, training jobs (one per
project at a time) and the automatic next round.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.datasets.models import Example, Split
from apps.jobs.models import Job
from apps.jobs.services import launch_job
from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project
from apps.training import kinds
from apps.training.models import Round, RoundStatus
from apps.training.prboost_settings import (
    clean_prboost_settings,
    prboost_settings,
)
from apps.training.services.common import (
    MASK_PREVIEW,
    active_training_job,
    latest_live_round,
    logger,
)


# --------------------------------------------------------------------------- settings
def update_prboost_settings(*, project: Project, user, data: dict) -> dict:
    """Validate and store ``project.settings["prboost"]`` (admins). Returns the stored dict."""
    if user is not None and role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can change the PRBoost settings.")
    cleaned = clean_prboost_settings(project=project, data=data)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        stored = dict(locked.settings or {})
        stored["prboost"] = cleaned
        locked.settings = stored
        locked.save(update_fields=["settings"])
    project.settings = stored
    return cleaned


def template_preview(*, project: Project, template: dict) -> dict:
    """A template rendered on a real example of the project (first dev, else pool example).

    Returns ``{"prompt": str, "example_id": int | None, "error": str | None}``.
    """
    from models.prboost.templates import Template, TemplateError

    try:
        parsed = Template.from_dict(template)
    except TemplateError as exc:
        return {"prompt": "", "example_id": None, "error": str(exc)}
    example = (
        Example.objects.filter(project=project, split=Split.DEV).order_by("id").first()
        or Example.objects.filter(project=project).order_by("id").first()
    )
    if example is None:
        return {"prompt": "", "example_id": None, "error": "The project has no examples yet."}
    entities = None
    if parsed.task_type == "relation_extraction":
        raw = example.entities or []
        if len(raw) != 2:
            return {"prompt": "", "example_id": example.pk, "error": "No entity mentions."}
        entities = tuple(e.get("text", "") for e in raw)
    try:
        prompt = parsed.render(example.text, entities, mask_token=MASK_PREVIEW)
    except TemplateError as exc:
        return {"prompt": "", "example_id": example.pk, "error": str(exc)}
    return {"prompt": prompt, "example_id": example.pk, "error": None}


# --------------------------------------------------------------------------- launching
def launch_training_job(*, project: Project, user, kind: str, params: dict | None = None) -> Job:
    """Launch one of the training kinds (project admins; ``user`` None = the system, e.g. the
    automatic next round). One training job per project at a time."""
    if kind not in kinds.LAUNCHABLE:
        raise ValidationError(f"{kind!r} is not a training job kind.")
    if user is not None and role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can launch training jobs.")
    params = kinds.LAUNCHABLE[kind][2](params or {})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = active_training_job(project=project)
        if busy is not None:
            raise ValidationError(
                f"Job #{busy.pk} ({kinds.LAUNCHABLE.get(busy.kind, (busy.kind,))[0].lower()}) "
                f"is still {busy.status}: wait for it to finish or cancel it first."
            )
        if kind == kinds.FINALIZE and latest_live_round(project=project) is None:
            raise ValidationError("Run a boosting round before finalizing.")
        if kind == kinds.RUN_ROUND:
            gold_dev = Example.objects.filter(
                project=project, split=Split.DEV, gold_label__isnull=False
            ).count()
            if gold_dev < 2:
                raise ValidationError(
                    "A round needs gold labels on the dev set: label at least two dev examples."
                )
        return launch_job(kind=kind, project=project, user=user, params=params)


def maybe_start_next_round(*, project: Project) -> Job | None:
    """With ``auto_next_round`` on: when the latest round's suggestions are all decided and no
    training job runs, launch the next round (as the system). Returns the job, if launched."""
    from apps.rules.models import Rule, RuleStatus

    if not prboost_settings(project)["auto_next_round"]:
        return None
    current = latest_live_round(project=project)
    if current is None or current.status != RoundStatus.REVIEW:
        return None
    waiting = Rule.objects.filter(
        project=project, round_number=current.number, status=RuleStatus.SUGGESTED
    ).exists()
    if waiting or active_training_job(project=project) is not None:
        return None
    try:
        job = launch_training_job(project=project, user=None, kind=kinds.RUN_ROUND)
    except ValidationError as exc:
        logger.info("project %s: no automatic next round: %s", project.pk, exc)
        return None
    Round.objects.filter(pk=current.pk, status=RoundStatus.REVIEW).update(
        status=RoundStatus.COMPLETE
    )
    return job
