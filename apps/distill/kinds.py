"""The distillation job kind: launched by project admins, runs on the gpu queue (fine-tuning)."""

from django.core.exceptions import ValidationError

from models.ptloss.loss import LOSSES

DISTILL = "distill_student"
TEACHERS = {"encoder": "Fine-tuned encoder (cross-fitted)", "prboost": "Finalized PRBoost model"}
STUDENTS = {
    "shallow": "First layers of the teacher encoder",
    "spread": "Layers spread over the teacher encoder (every other layer)",
    "frozen": "Frozen encoder + trained head",
    "hub": "A smaller model by name or folder",
}
LOSS_LABELS = {"ce": "hard CE", "kd": "KD", "ls": "label smoothing", "ptloss": "PTLoss"}

_INTS = {  # name: (default, low, high)
    "layers": (2, 1, 24),
    "epochs": (3, 1, 20),
    "teacher_epochs": (2, 1, 20),
    "folds": (3, 2, 10),
    "max_pool": (2000, 10, 200_000),
    "max_length": (64, 8, 512),
    "candidates": (32, 1, 512),
    "seed": (0, 0, 1_000_000),
}


def clean_params(params: dict) -> dict:
    """Validated distillation settings (defaults filled in); ValidationError names each bad one."""
    if not isinstance(params, dict):
        raise ValidationError("Job parameters must be a JSON object.")
    known = set(_INTS) | {"teacher", "student", "losses", "encoder", "hub_model"}
    unknown = set(params) - known
    if unknown:
        raise ValidationError(f"Unknown parameter(s): {', '.join(sorted(map(str, unknown)))}.")
    out: dict = {}
    errors: dict[str, str] = {}
    for name, (default, low, high) in _INTS.items():
        value = params.get(name, default)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[name] = f"must be a whole number between {low} and {high}."
        else:
            out[name] = value
    teacher = params.get("teacher", "encoder")
    if teacher not in TEACHERS:
        errors["teacher"] = f"must be one of: {', '.join(TEACHERS)}."
    student = params.get("student", "shallow")
    if student not in STUDENTS:
        errors["student"] = f"must be one of: {', '.join(STUDENTS)}."
    losses = params.get("losses", list(LOSSES))
    if isinstance(losses, str):
        losses = [x.strip() for x in losses.split(",") if x.strip()]
    if not isinstance(losses, list) or not losses or any(x not in LOSSES for x in losses):
        errors["losses"] = f"choose one or more of: {', '.join(LOSSES)}."
    for name in ("encoder", "hub_model"):
        value = params.get(name) or ""
        if not isinstance(value, str) or len(value) > 300:
            errors[name] = "must be a model name or folder (at most 300 characters)."
    if student == "hub" and not params.get("hub_model"):
        errors["hub_model"] = "a hub student needs a model name or folder."
    if errors:
        raise ValidationError(errors)
    out.update(
        teacher=teacher,
        student=student,
        losses=[x for x in LOSSES if x in losses],
        encoder=params.get("encoder") or "",
        hub_model=params.get("hub_model") or "",
    )
    return out


def register() -> None:
    from apps.jobs.kinds import register_launchable

    register_launchable(
        kind=DISTILL,
        label="Distill a student",
        description="Trains small students of the project's labeling model with hard CE, KD, "
        "label smoothing and PTLoss, compares them and serves the best on dev.",
        clean_params=clean_params,
        resource="gpu",
    )
