"""The "calibrate LoRC" job kind: build a compressed copy of the project's causal LM (gpu)."""

from django.core.exceptions import ValidationError

CALIBRATE = "lorc_calibrate"
BITS = (8, 4)
CEILING_RANGE = (1.0, 2.0)  # perplexity ceiling as a multiple of the full model's
DEFAULTS = {"bits": 8, "ceiling": 1.04}


def clean_params(params: dict) -> dict:
    """``bits`` 8 or 4 (latent storage, default 8); ``ceiling`` > 1 and <= 2 (perplexity on
    held-out calibration text, as a multiple of the uncompressed model's; default 1.04)."""
    if not isinstance(params, dict):
        raise ValidationError("Job parameters must be a JSON object.")
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValidationError(f"Unknown parameter(s): {', '.join(sorted(map(str, unknown)))}.")
    cleaned = {**DEFAULTS, **params}
    errors = {}
    bits = cleaned["bits"]
    if isinstance(bits, str) and bits.strip().isdigit():
        bits = int(bits)
    if isinstance(bits, bool) or bits not in BITS:
        errors["bits"] = "must be 8 or 4."
    try:
        ceiling = float(cleaned["ceiling"])
    except (TypeError, ValueError):
        ceiling = None
    if ceiling is None or not CEILING_RANGE[0] < ceiling <= CEILING_RANGE[1]:
        errors["ceiling"] = "must be a number above 1 and at most 2 (e.g. 1.04 for +4%)."
    if errors:
        raise ValidationError(errors)
    return {"bits": bits, "ceiling": ceiling}


def register() -> None:
    from apps.jobs.kinds import register_launchable

    register_launchable(
        kind=CALIBRATE,
        label="Calibrate LoRC",
        description=(
            "Builds a low-rank, quantized KV cache for the project's causal language model from "
            "the project's own texts, and measures the memory saved and the quality kept."
        ),
        clean_params=clean_params,
        resource="gpu",
    )
