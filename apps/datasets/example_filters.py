"""The examples filter, one definition for the browser page and the API.

Query parameters (same names in both): ``search``, ``split``, ``gold_label``, ``label``
(a label index or ``none``), ``min_confidence``, ``max_confidence`` (0..1), ``label_source``
(``gold``, ``rules``, ``model`` or ``none``), ``student_label`` (the serving distilled student's
prediction: a label index or ``none``), ``min_student_confidence``, ``max_student_confidence``.
"""

from django import forms

from apps.datasets.models import LabelSource, Split
from apps.datasets.selectors import NONE

FILTER_FIELDS = (
    "search",
    "split",
    "gold_label",
    "label",
    "min_confidence",
    "max_confidence",
    "label_source",
    "student_label",
    "min_student_confidence",
    "max_student_confidence",
)


def label_choices(project, *, empty: str) -> list[tuple[str, str]]:
    return [("", empty), (NONE, "— none —")] + [
        (str(index), f"{index}: {name}") for index, name in enumerate(project.labels or [])
    ]


class ExampleFilterForm(forms.Form):
    search = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": 'words, "a phrase", -not'}),
    )
    split = forms.ChoiceField(required=False, choices=[("", "any split"), *Split.choices])
    gold_label = forms.ChoiceField(required=False, label="Gold label")
    label = forms.ChoiceField(required=False, label="Current label")
    min_confidence = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Confidence ≥",
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "0"}),
    )
    max_confidence = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Confidence ≤",
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "1"}),
    )
    label_source = forms.ChoiceField(
        required=False,
        label="Source",
        choices=[("", "any source")]
        + [(value, name) for value, name in LabelSource.choices if value]
        + [(NONE, "— none —")],
    )

    student_label = forms.ChoiceField(required=False, label="Student says")
    min_student_confidence = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Student conf. ≥",
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "0"}),
    )
    max_student_confidence = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Student conf. ≤",
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "1"}),
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["gold_label"].choices = label_choices(project, empty="any gold label")
        self.fields["label"].choices = label_choices(project, empty="any label")
        self.fields["student_label"].choices = label_choices(project, empty="any prediction")

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("min_confidence"), cleaned.get("max_confidence")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError(
                f"The confidence range is empty: minimum {low} is above maximum {high}."
            )
        return cleaned

    def selector_kwargs(self) -> dict:
        """Keyword arguments for ``examples_for_project`` (valid form only)."""
        data = self.cleaned_data
        return {
            "search": data.get("search") or None,
            "split": data.get("split") or None,
            "gold_label": data.get("gold_label") or None,
            "label": data.get("label") or None,
            "min_confidence": data.get("min_confidence"),
            "max_confidence": data.get("max_confidence"),
            "label_source": data.get("label_source") or None,
            "student_label": data.get("student_label") or None,
            "min_student_confidence": data.get("min_student_confidence"),
            "max_student_confidence": data.get("max_student_confidence"),
        }

    def rendered_fields(self) -> list[dict]:
        """What the filter form shows, ready for plain HTML (cheaper than widget templates)."""
        out = []
        for name in FILTER_FIELDS:
            field = self.fields[name]
            raw = self.data.get(name, "") if self.is_bound else ""
            item = {"name": name, "id": f"id_{name}", "label": field.label or name.capitalize()}
            if isinstance(field, forms.ChoiceField):
                item["choices"] = [
                    (str(value), text, str(value) == raw) for value, text in field.choices
                ]
            else:
                item["value"] = raw
                item["attrs"] = field.widget.attrs
            out.append(item)
        return out

    def is_filtered(self) -> bool:
        return any(value not in (None, "") for value in self.selector_kwargs().values())
