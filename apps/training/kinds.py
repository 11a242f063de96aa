"""The training job kinds, registered as launchable with apps.jobs (see apps/jobs/kinds.py).

Each declares the resource it needs: warming the cache runs the language model and the encoder
over every text (the one GPU-heavy step, so ``gpu`` when a GPU worker exists); a round,
finalization and refreshing labels fit small heads and label models on cached features (``cpu``).
"""

from django.core.exceptions import ValidationError

WARM_CACHE = "prboost_warm_cache"
RUN_ROUND = "train_prboost_round"
REFRESH_LABELS = "prboost_refresh_labels"
FINALIZE = "train_prboost_finalize"
TRAINING_KINDS = (WARM_CACHE, RUN_ROUND, REFRESH_LABELS, FINALIZE)


def _no_params(kind: str):
    def clean(params: dict) -> dict:
        if not isinstance(params, dict):
            raise ValidationError("Job parameters must be a JSON object.")
        if params:
            raise ValidationError(
                f"{kind} takes no parameters (got {', '.join(sorted(map(str, params)))}); "
                "its settings are the project's PRBoost settings."
            )
        return {}

    return clean


def clean_refresh_params(params: dict) -> dict:
    """``overwrite_model_labels`` (bool, default false): also replace finalized model labels."""
    if not isinstance(params, dict):
        raise ValidationError("Job parameters must be a JSON object.")
    unknown = set(params) - {"overwrite_model_labels"}
    if unknown:
        raise ValidationError(f"Unknown parameter(s): {', '.join(sorted(map(str, unknown)))}.")
    value = params.get("overwrite_model_labels", False)
    if not isinstance(value, bool):
        raise ValidationError({"overwrite_model_labels": "must be true or false."})
    return {"overwrite_model_labels": value}


# Refreshing labels applies rules and a label model (seconds): a person waits for it, so it
# runs on the interactive queue, never behind a warm-up or a round (apps/jobs/kinds.py).
RESOURCES = {WARM_CACHE: "gpu", RUN_ROUND: "cpu", REFRESH_LABELS: "interactive", FINALIZE: "cpu"}

LAUNCHABLE = {
    WARM_CACHE: (
        "Warm the PRBoost cache",
        "Embeds every text and runs the language model over the pool and dev set once "
        "(resumable); later rounds read the cache and run no language model.",
        _no_params(WARM_CACHE),
    ),
    RUN_ROUND: (
        "Run a boosting round",
        "Applies the accepted rules, trains the next weak learner, reweights the dev set and "
        "proposes new rules from the largest errors for review.",
        _no_params(RUN_ROUND),
    ),
    REFRESH_LABELS: (
        "Refresh labels from rules",
        "Applies the accepted rules and the label model to the pool and writes the labels.",
        clean_refresh_params,
    ),
    FINALIZE: (
        "Finalize labels",
        "Self-trains the final model from the boosted ensemble and writes the labels and "
        "confidences the export serves.",
        _no_params(FINALIZE),
    ),
}


def register() -> None:
    from apps.jobs.kinds import register_launchable

    for kind, (label, description, clean) in LAUNCHABLE.items():
        register_launchable(
            kind=kind,
            label=label,
            description=description,
            clean_params=clean,
            resource=RESOURCES[kind],
        )
