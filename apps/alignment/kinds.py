"""The DORM job kinds (registered as launchable with apps.jobs, see apps/jobs/kinds.py).

Both train reward models (an ensemble, then the refinement, or the final model): work a GPU
speeds up a lot, so both declare ``gpu`` (they fall back to ``cpu`` without a GPU worker).
"""

from django.core.exceptions import ValidationError

COMPUTE_WEIGHTS = "dorm_compute_weights"
TRAIN_REWARD_MODEL = "dorm_train_reward_model"
ALIGNMENT_KINDS = (COMPUTE_WEIGHTS, TRAIN_REWARD_MODEL)
WEIGHT_MODES = ("features", "source", "free")
METHODS = ("penalty", "lookahead")
REWARD_KINDS = ("head", "top")


def _object(params) -> dict:
    if not isinstance(params, dict):
        raise ValidationError("Job parameters must be a JSON object.")
    return params


def _unknown(params: dict, allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise ValidationError(f"Unknown parameter(s): {', '.join(sorted(map(str, unknown)))}.")


def _choice(params: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise ValidationError({name: f"must be one of {', '.join(choices)}."})
    return value


def clean_weights_params(params: dict) -> dict:
    """``weights`` (features|source|free), ``method`` (penalty|lookahead), ``stage2`` (bool),
    ``reward_model`` (head|top), ``members`` (2-10)."""
    params = _object(params)
    _unknown(params, {"weights", "method", "stage2", "reward_model", "members"})
    stage2 = params.get("stage2", True)
    if not isinstance(stage2, bool):
        raise ValidationError({"stage2": "must be true or false."})
    members = params.get("members", 5)
    if isinstance(members, bool) or not isinstance(members, int) or not 2 <= members <= 10:
        raise ValidationError({"members": "must be a whole number from 2 to 10."})
    return {
        "weights": _choice(params, "weights", WEIGHT_MODES, "features"),
        "method": _choice(params, "method", METHODS, "penalty"),
        "stage2": stage2,
        "reward_model": _choice(params, "reward_model", REWARD_KINDS, "head"),
        "members": members,
    }


def clean_train_params(params: dict) -> dict:
    """``fraction`` (0 < f ≤ 1; below 1 trains on the top-weighted fraction), ``weighted``
    (bool: use the weights as loss weights), ``reward_model`` (head|top)."""
    params = _object(params)
    _unknown(params, {"fraction", "weighted", "reward_model"})
    fraction = params.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ValidationError({"fraction": "must be a number above 0 and at most 1."})
    weighted = params.get("weighted", True)
    if not isinstance(weighted, bool):
        raise ValidationError({"weighted": "must be true or false."})
    return {
        "fraction": float(fraction),
        "weighted": weighted,
        "reward_model": _choice(params, "reward_model", REWARD_KINDS, "head"),
    }


LAUNCHABLE = {
    COMPUTE_WEIGHTS: (
        "Compute DORM weights",
        "Trains a bootstrap ensemble of reward models on the pool (stage 1), refines the weights "
        "against the clean dev pairs (stage 2) and stores a weight per pair.",
        clean_weights_params,
    ),
    TRAIN_REWARD_MODEL: (
        "Train reward model",
        "Trains a Bradley–Terry reward model on the weighted pool (or its top-weighted "
        "fraction), reports dev/test accuracy and stores the model as an artifact.",
        clean_train_params,
    ),
}


def register() -> None:
    from apps.jobs.kinds import register_launchable

    for kind, (label, description, clean) in LAUNCHABLE.items():
        register_launchable(
            kind=kind, label=label, description=description, clean_params=clean, resource="gpu"
        )
