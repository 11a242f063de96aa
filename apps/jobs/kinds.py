"""Job kinds: the resource each kind needs, and which kinds admins may launch by name.

Routing by resource: every kind declares what it needs — ``"gpu"`` for work that a GPU makes far
faster (a language-model pass, fine-tuning, decomposing an LLM), ``"interactive"`` for short
jobs a person waits for (imports, exports, label refresh, index builds, bulk actions: their own
queue and worker process, so they never wait behind a long model job), ``"cpu"`` otherwise — with
:func:`declare_kind` (or the ``resource`` argument of :func:`register_launchable`). A kind's
queue is its resource; ``settings.FRUGAL_JOB_QUEUES`` (kind -> queue) overrides it per
deployment, and an undeclared kind runs on ``cpu``. Work meant for ``gpu`` falls back to ``cpu``
unless ``settings.FRUGAL_GPU_WORKERS`` says a GPU worker consumes the gpu queue. The queue name on
the broker is ``settings.FRUGAL_QUEUE_PREFIX`` + the logical name.

Launchable kinds: the generic launch endpoint (``POST /api/v1/projects/<id>/jobs/``) and pages
accept only kinds registered here, each with a function that validates its parameters. Apps
register their kinds in ``AppConfig.ready()`` with :func:`register_launchable`.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

QUEUES = ("cpu", "gpu", "interactive")

RESOURCES = QUEUES

# kind -> the resource it declared (filled by declare_kind / register_launchable at app load).
JOB_RESOURCES: dict[str, str] = {}


def declare_kind(*, kind: str, resource: str) -> None:
    """Say which resource (``cpu``, ``gpu`` or ``interactive``) jobs of ``kind`` need; routing
    follows it."""
    if resource not in RESOURCES:
        raise ValueError(f"Job kind {kind!r} declares unknown resource {resource!r}.")
    JOB_RESOURCES[kind] = resource


def resource_for_kind(kind: str) -> str:
    """The resource a kind declared (``cpu`` when it declared none)."""
    return JOB_RESOURCES.get(kind, "cpu")


def queue_for_kind(kind: str) -> str:
    """The logical queue (``cpu``, ``gpu`` or ``interactive``) a job of this kind runs on."""
    overrides = getattr(settings, "FRUGAL_JOB_QUEUES", {}) or {}
    queue = overrides.get(kind) or resource_for_kind(kind)
    if queue not in QUEUES:
        raise ValueError(f"Job kind {kind!r} is mapped to unknown queue {queue!r}.")
    if queue == "gpu" and not settings.FRUGAL_GPU_WORKERS:
        return "cpu"
    return queue


def broker_queue_name(queue: str) -> str:
    """The queue's name on the broker (prefixed so several deployments share one Redis)."""
    return f"{settings.FRUGAL_QUEUE_PREFIX}{queue}"


@dataclass(frozen=True)
class LaunchableKind:
    kind: str
    label: str
    description: str
    # Takes the submitted params (a dict), returns the cleaned params or raises ValidationError.
    clean_params: Callable[[dict], dict]


_LAUNCHABLE: dict[str, LaunchableKind] = {}


def register_launchable(
    *,
    kind: str,
    label: str,
    description: str,
    clean_params: Callable[[dict], dict],
    resource: str = "cpu",
) -> None:
    """Let admins launch ``kind`` by name (API and pages); ``clean_params`` validates input;
    ``resource`` is what its jobs need (see :func:`declare_kind`)."""
    declare_kind(kind=kind, resource=resource)
    _LAUNCHABLE[kind] = LaunchableKind(
        kind=kind, label=label, description=description, clean_params=clean_params
    )


def launchable_kinds() -> dict[str, LaunchableKind]:
    return dict(_LAUNCHABLE)


def kind_label(kind: str) -> str:
    """What people read for a job kind: the launchable kind's label ("Finalize labels"), never
    the internal name; an unregistered kind reads as words ("Some kind")."""
    known = _LAUNCHABLE.get(kind)
    if known is not None:
        return known.label
    words = kind.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Job"


def _number(params: dict, name: str, default, *, low, high, kind=float):
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError({name: f"must be a number between {low} and {high}."})
    if kind is int and int(value) != value:
        raise ValidationError({name: f"must be a whole number between {low} and {high}."})
    if not low <= value <= high:
        raise ValidationError({name: f"must be between {low} and {high} (got {value})."})
    return kind(value)


def clean_selftest_params(params: dict) -> dict:
    """``steps`` (1-1000), ``step_seconds`` (0-60), ``fail_at_step`` (optional, 1..steps);
    at most an hour in all."""
    unknown = set(params) - {"steps", "step_seconds", "fail_at_step"}
    if unknown:
        raise ValidationError(f"Unknown parameter(s) for selftest: {', '.join(sorted(unknown))}.")
    steps = _number(params, "steps", 5, low=1, high=1000, kind=int)
    step_seconds = _number(params, "step_seconds", 0.5, low=0, high=60)
    if steps * step_seconds > 3600:
        raise ValidationError("A self-test may last at most an hour (steps × step_seconds).")
    fail_at = _number(params, "fail_at_step", None, low=1, high=steps, kind=int)
    cleaned = {"steps": steps, "step_seconds": step_seconds}
    if fail_at is not None:
        cleaned["fail_at_step"] = fail_at
    return cleaned


register_launchable(
    kind="selftest",
    label="Worker self-test",
    description=(
        "Runs a few timed steps on a worker, reporting progress; checks that workers pick up "
        "jobs, report progress and honour cancel."
    ),
    clean_params=clean_selftest_params,
)
