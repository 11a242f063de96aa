"""The PRBoost settings form (values validated again by prboost_settings.clean_prboost_settings)."""

import json

from django import forms
from django.core.exceptions import ValidationError

from apps.frugal import safe_json
from apps.training.prboost_settings import (
    DEFAULTS,
    END_MODEL_LABELS,
    END_MODELS,
    LIMITS,
    PROPOSER_LABELS,
    PROPOSERS,
)


def _int_field(name: str, label: str, help_text: str) -> forms.IntegerField:
    low, high = LIMITS[name]
    return forms.IntegerField(label=label, min_value=low, max_value=high, help_text=help_text)


class PRBoostSettingsForm(forms.Form):
    proposer = forms.ChoiceField(
        choices=[(p, PROPOSER_LABELS[p]) for p in PROPOSERS],
        help_text="How candidate rules are proposed from the largest errors.",
    )
    language_model = forms.CharField(
        required=False,
        max_length=300,
        help_text=(
            "A Hugging Face model name or local folder. Empty: SmolLM2-135M-Instruct (causal). "
            "The masked-LM proposer needs one (e.g. roberta-base)."
        ),
    )
    templates = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text=(
            'A JSON list of {"id", "text", "style"} with {text} (and {e1}/{e2} for relations, '
            "{mask} for masked LMs). Empty: the defaults for this task."
        ),
    )
    large_error_instances = _int_field(
        "large_error_instances",
        "Large-error instances per round",
        "Misclassified dev examples with the largest boosting weights that rules come from.",
    )
    top_k = _int_field("top_k", "Top-k answer words", "LM answer words kept per example.")
    add_ngrams = forms.BooleanField(
        required=False,
        label="Also propose n-gram and number-pattern rules, ranked with the LM's",
        help_text='Phrases such as "how many" or "caused by" and numbers such as phone numbers, '
        "which a language model rarely answers with. No effect with the n-gram proposer.",
    )
    candidates_per_round = _int_field(
        "candidates_per_round", "Candidates per round", "Suggestions stored for review per round."
    )
    decisions_per_suggestion = _int_field(
        "decisions_per_suggestion",
        "Decisions per suggestion",
        "How many annotators decide each suggestion.",
    )
    auto_next_round = forms.BooleanField(
        required=False,
        label="Start the next round automatically when a round's review is complete",
    )
    use_imported_votes = forms.BooleanField(
        required=False,
        label="Use imported rule votes as seed rules (from the first round on)",
    )
    end_model = forms.ChoiceField(
        required=False,
        label="End model",
        choices=[(m, END_MODEL_LABELS[m]) for m in END_MODELS],
        help_text="What learns from the accepted rules. Fixed once the first round has run "
        "(a new run is needed to change the features); the final model can change any time.",
    )
    encoder = forms.CharField(
        required=False,
        max_length=300,
        help_text="Encoder for embeddings and fine-tuning: a Hugging Face name or local folder "
        "(e.g. a multilingual one for non-English text). Empty: the server's default.",
    )

    def clean_end_model(self):
        return self.cleaned_data.get("end_model") or DEFAULTS["end_model"]

    def clean_templates(self):
        raw = (self.cleaned_data.get("templates") or "").strip()
        if not raw:
            return None
        try:
            value = safe_json.loads(raw)  # no deep nesting, no NUL (PostgreSQL refuses it)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        if not isinstance(value, list):
            raise ValidationError("Give a JSON list of templates.")
        return value

    @classmethod
    def initial_from(cls, prb: dict, default_templates: list[dict]) -> dict:
        initial = dict(prb)
        initial["templates"] = json.dumps(prb.get("templates") or default_templates, indent=1)
        return initial
